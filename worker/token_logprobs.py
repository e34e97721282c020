"""Per-item token ids and mean log-probability of a text generate call, for clients that show confidence (OpenAI's
``verbose_json`` segments carry ``tokens`` and ``avg_logprob``).

``SeamlessM4Tv2Model.generate`` always asks the text decoder for ``output_scores`` (transformers sets it for its own
use), so the scores cost nothing more to keep. What they hold depends on the search:

- greedy (``text_num_beams`` 1): the processed logits of each step, not yet normalised: log-softmax them here;
- beam search: log-softmaxed already, one row per beam, and ``beam_indices`` says which row each kept sequence
  came from at each step.

This is what ``GenerationMixin.compute_transition_scores`` computes (``normalize_logits`` for greedy; tested
against it), one step at a time: that method stacks every step's scores for the whole batch into one more tensor
(steps x rows x vocabulary, gigabytes for a full-size batch on a 256k vocabulary), here each step is gathered
alone. Column ``j`` of the result scores ``sequences[:, prefix + j]``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ItemTokens", "item_tokens", "step_logprobs"]


@dataclass(frozen=True)
class ItemTokens:
    tokens: tuple[int, ...]
    """The generated token ids: no prefix, end token or padding."""
    avg_logprob: float | None
    """Mean log-probability per generated token, the end token included; None when nothing was generated."""


def step_logprobs(output: Any, *, prefix: int) -> torch.Tensor:
    """(rows, steps) on the CPU: the log-probability of the token each returned sequence took at each step; 0 past
    the end of a beam search hypothesis (``beam_indices`` -1 there)."""
    sequences: torch.Tensor = output.sequences
    beam_indices: torch.Tensor | None = getattr(output, "beam_indices", None)
    steps = min(len(output.scores), sequences.shape[1] - prefix)
    rows = torch.arange(sequences.shape[0], device=sequences.device)
    columns = []
    for step in range(steps):
        scores: torch.Tensor = output.scores[step]
        chosen = sequences[:, prefix + step]
        if beam_indices is None:
            # log_softmax is one fused pass (logsumexp is ~2.5x slower on CPU): ~9 ms a step for 8 rows of a 256k
            # vocabulary on 2 cores, where the full-size model's output head alone takes ~570 ms.
            columns.append(scores.float().log_softmax(dim=-1)[rows, chosen])
            continue
        beams = beam_indices[:, step]
        taken = scores[beams.clamp(min=0), chosen].float()
        columns.append(torch.where(beams >= 0, taken, torch.zeros_like(taken)))
    if not columns:
        return torch.zeros((sequences.shape[0], 0))
    return torch.stack(columns, dim=1).cpu()


def item_tokens(
    generated: Sequence[int],
    logprobs: torch.Tensor,
    *,
    eos_ids: Collection[int],
    pad_id: int | None,
) -> ItemTokens:
    """One item's tokens and mean log-probability, from its generated ids (the sequence after the prefix, already
    cut to the item's own length bound) and its row of :func:`step_logprobs`. The item ends at its first end token
    (scored, not kept) or padding (neither)."""
    tokens: list[int] = []
    scored = 0
    for token in generated:
        if token in eos_ids:
            scored += 1
            break
        if token == pad_id:
            break
        tokens.append(token)
        scored += 1
    scored = min(scored, int(logprobs.shape[0]))
    avg = float(logprobs[:scored].double().mean()) if scored else None
    return ItemTokens(tuple(tokens), avg)
