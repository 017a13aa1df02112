"""`hub bench`: speed as a measured property. Each benchmark starts what it measures as in
production (uvicorn without access log, the configured database and Redis, real worker
processes) and drives it from a separate load process."""
