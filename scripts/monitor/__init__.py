"""`make monitor`: a real Prometheus scraping `make serve`'s servers, with alert rules and a
Grafana dashboard generated from the spec against our metrics catalogue (handlers/metrics.py).

rules.py (alert rules), dashboard.py (Grafana JSON), prometheus.py (the scrape configuration,
promtool, and the Prometheus process).
"""
