"""Upstream MCP servers, virtual servers and the relay (to come: see the federation issue)."""
