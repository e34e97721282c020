"""FastAPI dependencies: the services and settings of the running app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.services import Services
from shared.settings import GatewaySettings


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
