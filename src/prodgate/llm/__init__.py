"""LLM services: providers and routes, streaming, tokens and prices, prompt versions."""
