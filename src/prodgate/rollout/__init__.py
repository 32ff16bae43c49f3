"""Canary rollouts.

- :mod:`~prodgate.rollout.router`: the traffic split and sticky routing (request path);
- :mod:`~prodgate.rollout.split`: the traffic split, its only writer;
- :mod:`~prodgate.rollout.analysis`: the checks of a canary against production;
- :mod:`~prodgate.rollout.controller`: the state machine's ticks, the commands, the runner;
- :mod:`~prodgate.rollout.state` and :mod:`~prodgate.rollout.commands`: its parts.

Nothing is imported here, so the gateway's import of the router stays light.
"""
