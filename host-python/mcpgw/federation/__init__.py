"""Upstream MCP servers: their connections, the merged catalog at /mcp, virtual servers, the relay."""
