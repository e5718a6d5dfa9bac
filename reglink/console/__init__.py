"""The review console (``reglink console``): FastAPI, server-rendered pages, SSE."""
