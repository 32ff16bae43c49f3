"""Human review, the control plane's side: the queue (claims, decisions, adjudication),
explanations, agreement and exports. What enters review is decided on the request path
(:mod:`prodgate.pipeline.review_entry`)."""
