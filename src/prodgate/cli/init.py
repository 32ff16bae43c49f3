"""``init``: write a prodgate.yaml to start from."""

from __future__ import annotations

import re
from pathlib import Path

import click

from prodgate.cli.context import Context, pass_ctx
from prodgate.exceptions import UsageError
from prodgate.spec import SERVICE_NAME

TEMPLATE = """\
# prodgate.yaml: the services prodgate serves. Reference: docs/spec.md
version: 1
services:
  {name}:
    description: What this service decides, in one sentence.
    owner:
      name: Your Team
      contact: team@example.com
    kind: classifier            # or regressor
    labels: [negative, positive]
    contract:
      input:                    # JSON Schema of one input row, checked on every request
        type: object
        additionalProperties: false
        required: [amount, category]
        properties:
          amount: {{type: number, minimum: 0}}
          category: {{type: string, enum: [a, b, c]}}
          note: {{type: string, nullable: true, maxLength: 200}}
    escalation:
      confidence_below: 0.7     # decisions less sure than this go to a person
    batching:
      max_batch_size: 64
      max_wait_ms: 2
    business:                   # what each outcome costs the business (docs/evaluation.md)
      positive: positive
      costs:
        false_negative: {{rate: 0.1, of: amount}}   # a missed positive: 10% of the amount
        false_positive: 40
        escalation: 25          # a person's review
    cohorts:                    # measured one by one beside the overall figures
      large: {{where: "amount >= 10000"}}
      category: {{by: category}}
    gates:                      # a version is approved only when every gate passes
      - accuracy >= 0.9
      - recall >= 0.8 on large
      - no cohort's accuracy more than 0.05 below overall
    approvals:                  # docs/governance.md
      required: 1
      separation_of_duties: true
    rollout:                    # canary steps and checks (docs/rollouts.md)
      steps: [5, 25, 50, 100]
      interval_s: 60
"""


@click.command()
@click.argument("service", default="my-service")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_ctx
def init(ctx: Context, service: str, force: bool) -> None:
    """Write a prodgate.yaml declaring SERVICE, to edit to your model's inputs."""
    if not re.match(SERVICE_NAME, service):
        raise UsageError(
            f"{service!r} is not a service name: lowercase letters, digits and '-', up to 63"
        )
    path = Path(ctx.settings.config or "prodgate.yaml")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    path.write_text(TEMPLATE.format(name=service), encoding="utf-8")
    click.echo(f"wrote {path}; edit the contract, then 'prodgate register {service} MODEL'")


COMMANDS = [init]
