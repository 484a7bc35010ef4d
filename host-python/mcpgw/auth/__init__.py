"""Identity and authorization: an OAuth 2.1 resource server (MCP authorization spec), API keys,
`[auth.policy]`, and the principal every session is bound to. See docs/auth.md.

    auth.setup: settings -> build_gate(...)   the Router's check of every MCP route request (None: auth none)
    federation.config: load_policy(...)  the `[auth.policy]` rules
    auth.access: policy -> Access           the engine's filter at the dispatch point
"""
