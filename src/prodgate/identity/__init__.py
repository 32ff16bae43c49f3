"""Who acts: actors and where their actions come from (API keys and owners to come)."""
