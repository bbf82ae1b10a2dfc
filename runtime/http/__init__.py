"""The HTTP surface: the FastAPI app, its middleware, the OpenAPI document, request schemas and
the uvicorn connection protocol."""
