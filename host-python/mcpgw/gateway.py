"""The gateway without any transport: the session engine and its state, the built-in
catalog, federation, and the dispatchers for `/mcp` and each virtual server. Every
transport serves the same one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .federation.config import load as load_upstreams
from .federation.hub import Federation
from .federation.merged import GatewayDispatcher
from .federation.virtual import VirtualDispatcher
from .plugins import plugin_registry_for
from .server.builtin import builtin_catalog
from .server.dispatcher import PROCESS_STATES, Dispatcher
from .server.engine import SessionEngine
from .server.input_required import RequestStates
from .server.listen import ListenHub
from .settings import Settings
from .state.registry import MemorySessions, SessionRegistry

if TYPE_CHECKING:
    from .plugins.registry import PluginRegistry
    from .state.shared import RedisSessions


@dataclass
class Gateway:
    engine: SessionEngine
    federation: Federation
    dispatcher: GatewayDispatcher  # /mcp
    servers: dict[str, VirtualDispatcher]  # /servers/{id}/...
    plugins: PluginRegistry | None = None  # None: no plugins configured and no admin API to load some

    def server(self, server_id: str | None) -> Dispatcher | None:
        """The dispatcher of an endpoint: None is /mcp, else a virtual server id (None if unknown)."""
        return self.dispatcher if server_id is None else self.servers.get(server_id)

    def live(self) -> dict[str, int]:
        return {**self.engine.live(), "upstream_links": self.federation.live_links()}


def build_gateway(settings: Settings) -> Gateway:
    """Raises federation.config.ConfigError for a bad upstream config file."""
    plugins = plugin_registry_for(settings)
    sessions: SessionRegistry
    shared: RedisSessions | None = None
    if settings.redis_url:
        from .state.shared import RedisSessions  # redis: only imported when configured

        sessions = shared = RedisSessions(settings.redis_url, settings.max_sessions, settings.session_idle_timeout_s)
    else:
        sessions = MemorySessions(max_sessions=settings.max_sessions, idle_timeout_s=settings.session_idle_timeout_s)
    engine = SessionEngine(
        sessions,
        settings.session_idle_timeout_s,
        plugins.hooks if plugins is not None else None,
        max_sessions_per_client=settings.max_sessions_per_client,
        max_requests_per_session=settings.max_requests_per_session,
    )
    upstreams = load_upstreams(settings.config, settings.max_body_bytes) if settings.config else []

    federation = Federation(upstreams)  # tells clients of list changes itself, only those whose view changed
    if shared is not None:  # every process re-reads a catalog an upstream said changed
        for upstream in federation.upstreams.values():
            upstream.announce = shared.announce_catalog
        shared.on_catalog = federation.heard_elsewhere
        federation.link_opened = shared.link_opened  # a second upstream session for a client: told once
        federation.shared_upstreams = shared  # an HTTP upstream session: opened once, re-attached everywhere
    servers = {u.id: VirtualDispatcher(u, federation) for u in federation.upstreams.values()}
    dispatcher = GatewayDispatcher(builtin_catalog(), federation)
    # 2026-07-28: subscriptions/listen streams (fed by the federation) and the requestState key.
    listens = ListenHub(settings.max_listens_per_client, settings.listen_idle_timeout_s)
    federation.listens = listens
    listens.interest = federation.listened.interest  # resource URIs a stream names: subscribed upstream
    engine.on_drain.append(listens.close)
    states = RequestStates(settings.request_state_key.encode()) if settings.request_state_key else PROCESS_STATES
    if settings.input_wait_s != states.ttl_s:
        states = RequestStates(settings.request_state_key.encode() or None, ttl_s=settings.input_wait_s)
    federation.interactive.max_per_client = settings.max_input_waits_per_client
    federation.interactive.wait_s = settings.input_wait_s
    for endpoint in (dispatcher, *servers.values()):
        endpoint.listens, endpoint.states = listens, states
    return Gateway(engine, federation, dispatcher, servers, plugins)
