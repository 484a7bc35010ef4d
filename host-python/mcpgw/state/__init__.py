"""Where session state lives: sessions, their event streams (resumption), delivery to the client's stream.

In memory today (the embedded default); the engine and transports reach it only
through `registry.SessionRegistry` and `streams.SessionStreams`.
"""
