"""A prompt version ready to answer: its prompt, its route, its prices, its output check.

Built once when the fleet loads a version of an ``llm`` service, so a request only
renders the template, fills in the body and calls the route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson

from prodgate.exceptions import OutputContractError, Violation
from prodgate.llm.prompt import Prompt
from prodgate.llm.route import Route
from prodgate.spec.llm import LlmService, ModelRef, Price

_FREE = Price(0.0, 0.0)


@dataclass(frozen=True)
class Endpoint:
    prompt: Prompt
    route: Route
    targets: tuple[ModelRef, ...]  # the prompt's model, then the fallbacks, in order
    llm: LlmService
    output_schema: Mapping[str, Any] | None  # the service's contract.output
    #: The output contract compiled, when the version asks for JSON (json_schema, or a
    #: json_object the contract still holds to).
    output: Any = None
    #: The dearest input and output prices of any model the route may use (a call's
    #: worst case is reserved at them).
    worst_price: Price = _FREE
    #: The version's own model, ``provider/model`` (answered by another: a fallback).
    prompt_model: str = ""

    @classmethod
    def build(
        cls,
        prompt: Prompt,
        route: Route,
        targets: Sequence[ModelRef],
        llm: LlmService,
        output_schema: Mapping[str, Any] | None,
    ) -> Endpoint:
        validator = None
        if prompt.response_format != "text" and output_schema:
            validator = jsonschema_rs.validator_for(dict(output_schema))
        prices = [llm.price(t) for t in targets]
        worst = Price(max(p.input for p in prices), max(p.output for p in prices))
        return cls(
            prompt, route, tuple(targets), llm, output_schema, validator, worst, str(targets[0])
        )

    def price(self, ref: ModelRef) -> Price:
        return self.llm.price(ref)

    def body(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
        """The upstream request (without ``model``, which the route sets per target):
        the version's parameters, then the caller's, and a ``max_tokens`` always, so
        the worst case of every call is known before it is made."""
        body: dict[str, Any] = {**self.prompt.parameters, **params, "messages": messages}
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = self.llm.max_tokens
        if "response_format" not in params:
            if self.prompt.response_format == "json_schema" and self.output_schema:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "output",
                        "schema": dict(self.output_schema),
                        "strict": False,
                    },
                }
            elif self.prompt.response_format == "json_object":
                body["response_format"] = {"type": "json_object"}
        return body

    def max_tokens(self, body: Mapping[str, Any]) -> int:
        value = body.get("max_completion_tokens") or body.get("max_tokens") or self.llm.max_tokens
        return int(value)

    def parse_output(self, text: str) -> Any:
        """The structured answer, checked against the output contract; None when the
        version asks for plain text. OutputContractError when it breaks it."""
        if self.prompt.response_format == "text":
            return None
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise OutputContractError([Violation("", "the answer is not JSON")], text) from None
        if self.output is not None:
            errors = [
                Violation("/" + "/".join(map(str, e.instance_path)), e.message[:200])
                for e in self.output.iter_errors(value)
            ]
            if errors:
                raise OutputContractError(errors, text)
        return value
