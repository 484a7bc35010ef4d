"""mcpgw: an MCP gateway whose Streamable HTTP edge is a sandboxed WebAssembly component."""

__version__ = "0.1.0"
