"""What an operator watches the gateway with: Prometheus metrics (`metrics.py`), request ids
(`request_id.py`), log formats and the request's fields on log lines (`logs.py`), and the one
middleware on the request path that ties them together (`observer.py`). See docs/observability.md."""
