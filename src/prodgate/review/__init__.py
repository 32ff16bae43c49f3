"""Human review: what enters the queue (:mod:`.entry`, on the request path), the
queue itself, explanations, agreement and exports (the control plane)."""
