"""Prompt injection and jailbreaks: patterns, decoded payloads, a small model.

Three layers over the normalised text (:mod:`prodgate.guard.normalise`), each
naming itself in its findings' ``detector``:

- ``injection.patterns``: the shapes attacks take, spelled as regular expressions
  over the normalised text: overriding the instructions, extracting the system
  prompt, role-play jailbreaks, exfiltration to a URL, and text in a document or
  tool output that addresses the model ("note to the AI reading this"). Beside
  fixed phrasings, a grammar: an override verb (ignore, erase, set aside, never
  mind, stop following, ...) a few words from a qualifier (all, your, previous,
  whatever, ...) and a target naming the model's governance (instructions, rules,
  guardrails, system prompt, content policy, refusal behaviour, ...); the converse
  ("... do not apply to me", "no longer bound by"); unlocking ("developer mode
  enabled", "turn off your filters", "respond without any guardrails"); and a claim
  of authority with a command ("new instructions from the administrator: ...").
  A grammar match whose object is an everyday thing (a dosage, a router, a vending
  machine, mail) scores lower, as does any match inside quotes in a text that talks
  about attacks. A pattern runs only when one of its trigger words is among the
  text's words (one set intersection selects them), and is tried only where a word
  it can begin with is (:func:`first_words`, read from the regex), not at every
  character. Text containing an attack word spelt backwards is also read reversed.
- ``injection.decoded``: base64, hex, rot13 and URL-encoded substrings, decoded and
  put through the other two layers; the finding is the encoded span.
- ``injection.model``: logistic regression over word unigrams and bigrams (the
  strongest single n-gram of a window left out of its score), trained
  by ``bench/guard_train.py`` on the project's corpus (train split only) and shipped
  as JSON (``guard/data/injection_model.json``): a dict of n-gram weights, loaded
  once, lazily. A long text is scored in overlapping windows of words and the best
  window counts, so an attack buried in a long document is not averaged away.

Scores are in [0, 1] and 0.5 is the operating point the policy uses by default.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from itertools import accumulate, pairwise, repeat
from operator import add
from pathlib import Path
from typing import Any

from .finding import INJECTION, Finding
from .normalise import Normalised, normalise, payloads

__all__ = ["InjectionDetector", "Model", "features", "load_model"]

MODEL_FILE = "injection_model.json"
#: Findings of the model layer below this score are not reported at all.
MIN_SCORE = 0.3

_VERBS_IGNORE = (
    r"(?:ignore|disregard|forget|skip|override|bypass|drop|discard|abandon|cancel|neglect|"
    r"overlook|set aside|throw out|scrap)"
)
_RULES = (
    r"(?:instructions?|directions?|directives?|prompts?|rules|guidelines|guidance|constraints|"
    r"restrictions|programming|polic(?:y|ies)|context|commands?|orders|guardrails|safeguards|"
    r"filters|training|task|system message)"
)
_MODEL = (
    r"(?:ai|a\.i\.|llm|large language model|language model|chatbot|assistant|gpt|chatgpt|claude|"
    r"gemini|model|bot|ai agents?|agents?|automated (?:assistant|reviewer|system|screening|"
    r"agent|tool)s?|ai (?:assistant|system|model|reviewer)s?)"
)


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str
    score: float
    regex: re.Pattern[str]
    triggers: frozenset[str]  # the pattern runs only if one of these is a word of the text
    requires: frozenset[str]  # ... and one of these too (when not empty)
    everyday: bool = False  # scored down when its object is an everyday thing (_OBJECTS)
    #: The words a match can begin with (from the regex), or None: matched only there.
    starts: frozenset[str] | None = None


def _p(
    kind: str, score: float, triggers: str, rx: str, requires: str = "", everyday: bool = False
) -> _Pattern:
    return _Pattern(
        kind,
        score,
        re.compile(rx, re.DOTALL),
        frozenset(triggers.split()),
        frozenset(requires.split()),
        everyday,
        first_words(rx),
    )


class _Open(Exception):
    """A regex whose match can begin elsewhere than at one of a few known words."""


def first_words(rx: str) -> frozenset[str] | None:
    """Every word a match of *rx* can begin with, or None if that is not a short list.

    A pattern with such a list is tried only where one of those words is (``match`` at
    each), not scanned through the whole text: the same matches for a fraction of the cost.
    """
    parser: Any = importlib.import_module("re._parser")
    try:
        words = _walk(
            list(parser.parse(rx, re.DOTALL)), "", importlib.import_module("re._constants")
        )
    except _Open:
        return None
    return frozenset(words) if len(words) <= 400 else None


def _walk(seq: list[Any], prefix: str, c: Any) -> set[str]:
    """The first words of the regex items *seq* after the word characters *prefix*."""
    for i, (op, arg) in enumerate(seq):
        rest = seq[i + 1 :]
        if op is c.AT and arg is c.AT_BOUNDARY and prefix:
            return {prefix}  # \b after word characters: the word ends here
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            continue
        if op is c.LITERAL:
            ch = chr(arg)
            if _WORD_CHAR.fullmatch(ch):
                prefix += ch
                continue
            if prefix:
                return {prefix}
            raise _Open
        if op is c.IN:
            out: set[str] = set()
            for iop, iarg in arg:
                if iop is c.LITERAL and _WORD_CHAR.fullmatch(chr(iarg)):
                    out |= _walk(rest, prefix + chr(iarg), c)
                elif prefix and (
                    iop is c.LITERAL or (iop is c.CATEGORY and iarg is c.CATEGORY_SPACE)
                ):
                    out.add(prefix)
                else:
                    raise _Open
            return out
        if op is c.BRANCH:
            return set().union(*(_walk(list(b) + rest, prefix, c) for b in arg[1]))
        if op is c.SUBPATTERN:
            return _walk(list(arg[-1]) + rest, prefix, c)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[1] == 1:
            once = _walk(list(arg[2]) + rest, prefix, c)
            return once | _walk(rest, prefix, c) if arg[0] == 0 else once
        if prefix and op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[0] >= 1:
            try:  # a run of non-word characters (\s+) ends the word
                _walk(list(arg[2]), "", c)
            except _Open:
                return {prefix}
            raise _Open
        raise _Open
    if prefix:
        return {prefix}
    raise _Open


_WORD_SPAN = re.compile(r"[a-z0-9']+")
_WORD_CHAR = re.compile(r"[a-z0-9']")

_R_RULES = (
    "instructions instruction directions directives directive prompt prompts rules guidelines "
    "guidance constraints restrictions programming policy policies context commands command "
    "orders guardrails safeguards filters training task message"
)
_R_MODEL = (
    "ai llm language chatbot assistant gpt chatgpt claude gemini model bot agent agents automated"
)


_TRIG_IGNORE = "ignore disregard forget skip override bypass drop discard abandon cancel neglect overlook aside throw scrap"  # noqa: E501

PATTERNS: tuple[_Pattern, ...] = (
    # -- overriding the instructions
    _p(
        "override",
        0.9,
        _TRIG_IGNORE,
        rf"\b{_VERBS_IGNORE}\b(?:[\s,]+[\w']+){{0,5}}?[\s,]+(?:previous|prior|above|earlier|"
        rf"preceding|foregoing|original|initial|old|existing|all|any|every|your|these|those|"
        rf"following|current|system)\b(?:\s+[\w']+){{0,3}}?\s+{_RULES}\b",
        requires=_R_RULES,
        everyday=True,
    ),
    _p(
        "override",
        0.85,
        "ignore disregard forget",
        r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:you\s+(?:were|have been|"
        r"are)\s+(?:told|given|instructed)|(?:written\s+)?(?:above|before|so far|previously))",
        requires="everything all anything",
    ),
    _p(
        "override",
        0.85,
        "longer void revoked outdated invalid cancelled canceled obsolete test fake overridden",
        rf"\b(?:previous|prior|original|earlier|above|old|your|system)\s+(?:\w+\s+)?{_RULES}\s+"
        r"(?:are|is|were|have been)\s+(?:now\s+)?(?:no longer (?:valid|apply|in effect)|void|"
        r"revoked|outdated|invalid|cancell?ed|obsolete|a test|fake|overridden)",
        requires=_R_RULES,
    ),
    _p(
        "override",
        0.8,
        "apply",
        rf"\b(?:your|previous|prior|original)\s+(?:\w+\s+)?{_RULES}\s+(?:no longer|do not|"
        r"don't)\s+apply",
        requires=_R_RULES,
        everyday=True,
    ),
    _p(
        "override",
        0.85,
        "follow obey listen",
        rf"\b(?:do not|don't|stop|never)\s+(?:follow|obey|listen to|adhere to)(?:ing)?\s+"
        rf"(?:your|the|any|those|these|what you were)\s+(?:\w+\s+){{0,2}}?(?:{_RULES}|told)",
        requires=_R_RULES + " told",
    ),
    _p(
        "override",
        0.7,
        "new updated real actual revised",
        r"(?:^|[\n#.:!>\]]\s*)(?:new|updated|real|actual|revised)\s+(?:system\s+)?(?:instructions?|"
        r"prompt|rules|directives?|task)\s*(?:###|:|are\b)",
        requires="instructions instruction prompt rules directive directives task",
    ),
    _p(
        "override",
        0.8,
        "system override administrator admin operator",
        r"\b(?:system|admin(?:istrator)?|operator|developer)\s+override\b(?!\s+(?:code|button|"
        r"switch|key|pin|password|procedure|form|request|function|feature|option|setting|valve|"
        r"lever|card|authority|rights|access|limit))"
        r"|\bas your (?:administrator|admin|operator|developer|creator)\b",
        everyday=True,
    ),
    # -- extracting the system prompt
    _p(
        "extraction",
        0.85,
        "reveal print show repeat output display dump echo tell give share list recite leak "
        "translate write return spell summarise summarize quote what",
        r"\b(?:reveal|print|show|repeat|output|display|dump|echo|tell me|give me|share|list|"
        r"recite|leak|spell ?check|translate|write out|return|summari[sz]e|quote|what (?:is|are|"
        r"were))\b(?:\s+[\w']+){0,4}?\s+(?:your|the|my)\s+(?:\w+\s+)?(?:system\s*prompt|system "
        r"message|(?:initial|original|first|hidden|secret|confidential|internal|pre-?)\s*"
        r"(?:instructions|prompt|rules|guidelines|message|configuration)|pre-?prompt|developer "
        r"(?:message|instructions|prompt)|(?:previous|above) instructions|instructions you were)",
        requires="prompt preprompt message instructions rules guidelines configuration pre",
    ),
    _p(
        "extraction",
        0.8,
        "above before",
        r"\b(?:repeat|print|output|show|echo|copy|return)\s+(?:\w+\s+){0,3}?(?:text|everything|"
        r"words|all|content|contents|messages?)\s+(?:\w+\s+){0,2}?(?:above|before)\s+(?:this|"
        r"here|starting)|\b(?:repeat|print)\s+the\s+(?:text|words)\s+above\b",
        requires="repeat print output show echo copy return",
    ),
    _p(
        "extraction",
        0.75,
        "rules instructions guidelines",
        r"\b(?:what|which)\s+(?:rules|instructions|guidelines)\s+(?:were you|have you been)\s+"
        r"(?:given|told)|\b(?:rules|instructions)\s+you\s+were\s+given,?\s+word for word",
        requires="given told",
    ),
    _p(
        "extraction",
        0.8,
        "reveal print show repeat output display dump echo tell give share list recite leak copy "
        "paste write return quote spell describe expose disclose",
        r"\b(?:reveal|print|show|repeat|output|display|dump|echo|tell|give|share|list|recite|"
        r"leak|copy|paste|write (?:out|down)|return|quote|spell out|expose|disclose)\b"
        r"(?:\s+(?:me|us|back|out))?\s+(?:all\s+(?:of\s+)?)?(?:your|the assistant['\u2019]s|the "
        r"bot['\u2019]s|the model['\u2019]s)\s+(?:\w+\s+){0,2}?(?:system (?:prompt|message)|"
        r"(?:hidden|secret|internal|initial|original|full|complete|exact|underlying|confidential|"
        r"starting|base|pre-?)\s*(?:prompt|instructions|configuration|setup|directives|rules|"
        r"guidelines)|configuration|config|instructions|directives|prompt|setup|"
        r"guidelines)\b",
        requires="prompt message instructions configuration config setup directives rules "
        "guidelines",
        everyday=True,
    ),
    _p(
        "indirect",
        0.75,
        "tell inform mention alert notify let reveal",
        r"\b(?:do not|don['\u2019]?t|never|must not|should not|shouldn['\u2019]?t)\s+(?:tell|"
        r"inform|mention (?:this|it) to|alert|notify|reveal (?:this|it) to|let)\s+(?:the|your)\s+"
        r"(?:user|human|recipient|reader)\b",
        requires="user human recipient reader",
    ),
    _p(
        "indirect",
        0.75,
        "ignore disregard",
        r"\b(?:ignore|disregard|do not answer|don['\u2019]?t answer)\s+(?:what\s+|whatever\s+)?"
        r"(?:the\s+)?(?:user|human)(?:['\u2019]s)?\s+(?:\w+\s+)?(?:question|request|query|"
        r"message|prompt|instructions?|asks?|says?|wants?)\b",
        requires="user human",
    ),
    _p(
        "override",
        0.85,
        "ignore ignorez ignora ignoriere ignorieren olvida vergiss oublie oubliez",
        r"\b(?:ignor(?:e|ez|a|ar|iere|ieren|ate)|olvida|vergiss|oublie[zr]?)\s+(?:\w+\s+){0,2}?"
        r"(?:les |las |los |le |la |alle |die |tutte |todas |as |todas as )?(?:\w+\s+)?"
        r"(?:instructions|instrucciones|anweisungen|istruzioni|instru[cç][oõ]es|consignes|"
        r"r[eè]gles|reglas|regeln|regole)\b",
        everyday=True,
    ),
    _p(
        "extraction",
        0.75,
        "what how",
        r"\bwhat (?:are|were|is|was) (?:your|the) (?:exact |original |initial |hidden |full |"
        r"secret |actual |real |underlying )?(?:instructions|system prompt|system message|"
        r"directives|configuration|pre-?prompt|prompt you were given)\b(?!\s+(?:for|on|about|"
        r"of|to)\b)"
        r"|\bwhat (?:were you|have you been) (?:told|instructed|programmed|configured) (?:to do )?"
        r"(?:before|at the (?:start|beginning)|by (?:your|the) (?:developers?|operators?|"
        r"creators?))"
        r"|\bhow (?:were|have) you been (?:instructed|configured|prompted|programmed)\b",
        requires="instructions prompt message directives configuration preprompt pre told "
        "instructed programmed configured prompted",
        everyday=True,
    ),
    _p(
        "extraction",
        0.75,
        "verbatim word character letter",
        r"\b(?:verbatim|word for word|word-for-word|character by character|letter by letter)\b"
        r".{0,60}?\b(?:your|the) (?:\w+ )?(?:instructions|prompt|system message|rules|guidelines|"
        r"configuration|directives)\b"
        r"|\b(?:your|the) (?:\w+ )?(?:instructions|prompt|system message|rules|guidelines|"
        r"configuration|directives)\b.{0,60}?\b(?:verbatim|word for word|word-for-word|"
        r"character by character|letter by letter)\b",
        requires="instructions prompt message rules guidelines configuration directives",
        everyday=True,
    ),
    _p(
        "indirect",
        0.6,
        _R_MODEL,
        rf"\b{_MODEL}s?\b(?:\s+[\w']+){{0,3}}?\s+(?:must|should|shall|need to|are (?:instructed|"
        r"required|expected) to|is (?:instructed|required|expected) to)\s+(?:always\s+)?(?:rank|"
        r"rate|recommend|mark|classify|score|approve|say|state|describe|report|reply|respond|"
        r"ignore|disregard|forget|output)\b",
        requires="must should shall need instructed required expected",
        everyday=True,
    ),
    _p(
        "override",
        0.8,
        "treat consider take regard",
        r"\b(?:treat|consider|take|regard)\s+(?:this|the following|what follows|these words)"
        r"\s+as\s+"
        r"(?:your|a|the)\s+(?:new\s+)?(?:[\w-]+\s+){0,2}?(?:directive|instructions?|rules?|task|"
        r"system prompt|orders?|command|priority)\b",
        requires="this following follows words",
    ),
    _p(
        "override",
        0.75,
        "updated changed lifted removed relaxed revised suspended waived",
        r"\b(?:your|the assistant['\u2019]?s?|the bot['\u2019]?s?|the ai['\u2019]?s?) (?:\w+ )?"
        r"(?:guidelines|rules|instructions|polic(?:y|ies)|restrictions|limits|settings) "
        r"(?:were|have been|has been|was|are|got) (?:just |now |officially )?(?:updated|changed|"
        r"lifted|removed|relaxed|revised|suspended|waived)\b.{0,60}?\byou (?:can|may|are "
        r"(?:now )?(?:allowed|permitted|free) to|should now|must now)\b",
        requires="guidelines rules instructions policy policies restrictions limits settings",
        everyday=True,
    ),
    _p(
        "extraction",
        0.75,
        "instructions rules guidelines directives prompt",
        r"\bwhat (?:instructions|rules|guidelines|directives|prompt) (?:did|have|has) (?:your|the) "
        r"(?:operator|developer|creator|owner|company|admin|system|maker)s? (?:give|given|set|"
        r"written|write|provide|provided)\b",
        requires="did have has",
    ),
    _p(
        "exfiltration",
        0.75,
        "http https",
        r"\b(?:paste|put|place|insert|append|add|embed|encode|attach|include|upload|send|post)\b"
        r".{0,40}?\b(?:(?:the )?(?:user|customer|client|policyholder|claimant|person|caller)"
        r"['\u2019]?s?\s+(?:\w+\s+)?(?:address|details|data|token|password|credentials|e-?mails?|"
        r"phone|messages|history|name|number)|(?:all (?:of )?)?(?:our|this|the) (?:chat|"
        r"conversation)(?: so far| history| log)?|everything (?:the user|i|we|they) (?:said|told|"
        r"wrote|typed))\b.{0,80}?https?://",
    ),
    # -- role-play jailbreaks
    _p(
        "roleplay",
        0.9,
        "dan stan dude aim anything norms machiavellian",
        r"\bdo anything now\b|\bstrive to avoid norms\b|\b(?:you are|act as|you're|play|become)\s+"
        r"(?:now\s+)?(?:dan|stan|dude|aim|omega|freedomgpt|evil ?bot|antigpt|dev ?mode)\b",
    ),
    _p(
        "roleplay",
        0.85,
        "developer mode",
        r"\b(?:developer|dev|debug|god|sudo|unrestricted|opposite|evil|jailbreak|admin) mode\b"
        r".{0,80}?"
        r"\b(?:ignore|ignores|no (?:restrictions|rules|filters|limits|censorship)|polic(?:y|ies)|"
        r"uncensored|unfiltered|anything|never refuse|disabled|without)"
        r"|\b(?:sudo|god|unrestricted|opposite|jailbreak|evil) mode (?:activated|enabled|on)\b"
        r"|\b(?:switch to|enter|activate|enable) (?:sudo|god|unrestricted|opposite|jailbreak|evil)"
        r" mode\b",
    ),
    _p(
        "roleplay",
        0.85,
        "pretend act behave respond roleplay role play imagine simulate you're you are stay "
        "become answer",
        r"\b(?:pretend|act|behave|respond|answer|roleplay|role-play|role play|imagine|simulate|"
        r"you are|you're|become|stay in character)\b.{0,80}?\b(?:unfiltered|uncensored|"
        r"unrestricted|jailbroken|amoral|unethical|no (?:content )?(?:polic(?:y|ies)|restrictions|"
        r"filters?|limits|limitations|ethics|ethical guidelines|guidelines|morals?|rules|"
        r"boundaries|censorship)|without (?:any )?(?:restrictions|filters|limits|ethics|ethical|"
        r"guidelines|morals?|rules|censorship|safety)|free (?:of|from) (?:all |any )?(?:rules|"
        r"restrictions|filters|guidelines)|(?:safety|content) (?:filters?|polic(?:y|ies)) "
        r"(?:turned off|disabled|removed|deleted|was deleted)|escaped its (?:rules|programming)|"
        r"never refuses?|not bound by)",
        requires="unfiltered uncensored unrestricted jailbroken amoral unethical restrictions "
        "filters filter limits limitations ethics ethical guidelines morals moral rules boundaries "
        "censorship safety policy policies free escaped refuse refuses bound",
    ),
    _p(
        "roleplay",
        0.8,
        "safety content ethical",
        r"\b(?:safety|content|ethical)\s+(?:filters?|protocols?|guidelines|polic(?:y|ies)|"
        r"settings|measures)\s+(?:is\s+|are\s+|have been\s+|were\s+)?(?:now\s+)?(?:disabled|"
        r"turned off|switched off|off|removed|deleted|lifted|suspended)\b",
        requires="disabled off removed deleted lifted suspended",
    ),
    _p(
        "roleplay",
        0.8,
        "jailbroken jailbreak",
        r"\bjailbr(?:oken|eak)\s+(?:ai|assistant|model|chatbot|version|mode|gpt|chatgpt|llm)\b"
        r"|\byou(?: are|'re| have been)\s+(?:now\s+)?jailbroken\b",
    ),
    _p(
        "indirect",
        0.8,
        "read processed summarised summarized analysed analyzed parsed reviewed screened scanned",
        r"\bif (?:this|the) (?:\w+ )?(?:email|document|page|text|message|file|review|cv|resume|"
        r"article|content|site|website|listing|application)\s+(?:is|was|gets)\s+(?:being\s+)?"
        rf"(?:read|processed|summari[sz]ed|analy[sz]ed|parsed|reviewed|screened|scanned)\s+by\s+"
        rf"(?:an?\s+|the\s+|any\s+)?(?:\w+\s+)?{_MODEL}\b",
        requires=_R_MODEL,
    ),
    _p(
        "indirect",
        0.7,
        _R_MODEL,
        rf"\b(?:any|all|every)\s+{_MODEL}s?\b(?:\s+[\w']+){{0,4}}?\s+(?:must|should|shall|is|are)"
        r"\s+(?:(?:instructed|required|told|expected) to\s+)?(?:ignore|disregard|forget|approve|"
        r"rate|rank|recommend|mark|classify|score|treat|output|say|respond with|reply with|"
        r"include|send|forward|state|describe)\b",
        requires="must should shall is are",
    ),
    _p(
        "indirect",
        0.7,
        "ai assistant llm model bot agent chatbot gpt",
        rf"<!--(?:(?!-->).){{0,200}}?\b{_MODEL}\b(?:(?!-->).){{0,200}}?\b(?:ignore|disregard|"
        r"forget|approve|instead|must|should|reply|respond|say|output|include|send|do not|don't)\b",
    ),
    _p(
        "indirect",
        0.75,
        "system admin assistant",
        r"(?:^|\n)\s*[\[(<]?(?:system|admin|assistant)[\])>]?\s*:\s*(?:ignore|disregard|forget|"
        r"new (?:instructions|task|rules)|you (?:are|must) now|override|from now on)\b",
    ),
    # -- exfiltration
    _p(
        "exfiltration",
        0.85,
        "send post forward email mail upload transmit exfiltrate leak copy export write append "
        "include submit",
        r"\b(?:send|post|forward|e-?mail|upload|transmit|exfiltrate|leak|copy|export|write|"
        r"append|include|submit)\b.{0,100}?\b(?:conversation|chat|history|messages|system prompt|"
        r"api keys?|keys|credentials|passwords?|tokens?|secrets?|environment variables|personal "
        r"data|bank details|account numbers|customer (?:records|data)|database|claim details|"
        r"address)\b.{0,100}?(?:https?://|www\.|\b[\w.+-]+@[\w-]+\.\w|\bwebhook\b|\burl\b|"
        r"\bendpoint\b|\bget request\b|\bparameter\b)",
        requires="conversation chat history messages prompt api keys key credentials password "
        "passwords token tokens secret secrets environment personal bank account customer database "
        "claim address",
    ),
    _p(
        "exfiltration",
        0.8,
        "visit call fetch request render load browse open",
        r"\b(?:visit|call|fetch|request|render|load|browse to|open)\b.{0,60}?https?://\S+.{0,80}?"
        r"\b(?:messages|conversation|chat|data|secrets?|keys?|history|address|passwords?|tokens?|"
        r"details|prompt)\b",
        requires="http https",
    ),
    _p(
        "exfiltration",
        0.8,
        "secrets conversation history keys passwords messages chat data replacing",
        r"!\[[^\]]{0,100}\]\(\s*https?://[^)\s]*[?&=][^)]*\).{0,120}?\b(?:replac\w*|fill\w*|"
        r"append\w*|secrets?|keys?|passwords?|conversation|history|messages)\b|"
        r"!\[[^\]]{0,100}\]\(\s*https?://[^)\s]*(?:[?&=]|/)[^)\s]*(?:secret|conversation|"
        r"history|chat|password|token|key|data)[^)]*\)",
    ),
    _p(
        "exfiltration",
        0.75,
        "instructions commands directions",
        r"\bfollow (?:the )?(?:instructions|commands|directions) (?:found |written |given )?"
        r"(?:there|at|on|in)\s+(?:https?://|that (?:page|url|site)|this (?:url|link))",
        requires="there at on in",
    ),
    _p(
        "exfiltration",
        0.8,
        "http https",
        r"!?\[[^\]]{0,100}\]\(\s*https?://[^)\s]*[?&/][\w-]*=?(?:\{[^}]{1,40}\}|\[[^\]]{1,40}\]|"
        r"<[^>]{1,40}>|%7b|\$\{?\w+)"
        r"|https?://\S*[?&][\w-]+=(?:\{[^}]{1,40}\}|\[[^\]]{1,40}\]|<[^>]{1,40}>|%7b)",
    ),
    _p(
        "exfiltration",
        0.75,
        "send post forward email mail upload transmit exfiltrate leak copy export submit share",
        r"\b(?:send|post|forward|e-?mail|upload|transmit|exfiltrate|leak|copy|export|submit|"
        r"share)\b.{0,80}?\b(?:conversation|transcript|chat (?:log|history)|user data|personal "
        r"(?:data|details|information)|contact details|phone numbers|customer (?:list|records|"
        r"data|details)|order history|session (?:tokens?|cookies?|ids?)|cookies|auth\w* "
        r"(?:tokens?|headers?)|api keys?|credentials|passwords?|card numbers|medical records|"
        r"private keys?|env(?:ironment)? var\w*|internal documents|system prompt)\b.{0,60}?"
        r"\bto\s+(?:this|that|the following|an external|an outside|my|my personal|a (?:remote|"
        r"third[- ]party))\s+(?:\w+\s+)?(?:address|server|endpoint|inbox|url|link|site|domain|"
        r"account|email|webhook|bucket)\b",
        requires="conversation transcript chat user personal contact phone customer order "
        "session cookies auth authorization api credentials password passwords card medical "
        "private env environment internal system",
    ),
    # -- indirect: text in a document that addresses the model
    _p(
        "indirect",
        0.8,
        "note message instruction instructions attention important hidden text",
        rf"\b(?:note|message|instructions?|attention|important(?: instruction)?|hidden text|"
        rf"notice|memo)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+|an\s+)?(?:\w+\s+){{0,2}}?{_MODEL}\b",
        requires=_R_MODEL,
    ),
    _p(
        "indirect",
        0.8,
        _R_MODEL,
        r"\b(?:ai|assistant|chatbot|llm|gpt|chatgpt|claude|gemini|copilot|bot)\b[^.\n:]{0,40}?:\s*"
        r"(?:(?:new|updated|real) instructions|ignore|disregard|forget|reveal|approve|"
        r"tell the user|print your|output your)\b",
        requires="instructions ignore disregard forget reveal approve tell print output",
    ),
    _p(
        "indirect",
        0.8,
        _R_MODEL,
        rf"\bif (?:you are|you're) an?\s+(?:\w+\s+)?{_MODEL}\b",
        requires="if",
    ),
    _p(
        "indirect",
        0.75,
        "dear hey hi hello attention psst",
        r"(?:^|[\s(\[<>\-.:!])(?:dear|hey|hi|hello|attention|psst)\s+(?:ai|llm|chatbot|assistant|"
        r"language model|gpt|chatgpt|claude|gemini|ai assistant|bot)\b",
        requires=_R_MODEL,
    ),
    _p(
        "indirect",
        0.85,
        "reading processing summarising summarizing screening analysing analyzing reviewing reads",
        rf"\b{_MODEL}\s+(?:that\s+|which\s+|who\s+)?(?:is\s+)?(?:reading|processing|summari[sz]ing|"
        r"screening|analy[sz]ing|reviewing|reads|processes|summari[sz]es|screens)\s+(?:this|these|"
        r"the following|my|our)",
        requires=_R_MODEL,
    ),
    _p(
        "indirect",
        0.8,
        "when summarise summarize summary read process analyse analyze translate",
        r"\bwhen (?:you|an?\s+\w+)\s+(?:summari[sz]e|reads?|process(?:es)?|analy[sz]es?|"
        r"translates?)\s+(?:this|the)\b.{0,80}?\b(?:instead|ignore|must|do not|don't|only)\b"
        r"|\bin your (?:summary|answer|reply|response),?\s+(?:do not|don't|never)\s+mention\b",
        requires="instead ignore must not don't only mention never",
    ),
    _p(
        "indirect",
        0.6,
        "system assistant im start inst",
        r"<\|?im_start\|?>|<\|(?:system|assistant)\|>|\[/?inst\]|</?system>|\[system(?: note)?"
        r"[^\]]{0,30}\]|(?:^|\n)\s*###\s*(?:system|instruction)",
    ),
)

# ---- the grammar of an override, of unlocking and of claimed authority ----------------
# Verb + optional qualifiers + a target that names the model's governance, a few words
# apart; the converse ("... do not apply to me"); unlocking ("developer mode enabled",
# "disable your filters", "answer without any content policy"); an authority claim with
# a command. Everyday objects of the same verbs are scored down by _OBJECTS below.
_W = r"[\s,]+[\w'\u2019$-]+"  # one more word, the gap between the grammar's parts
_OV = (
    r"(?:ignore|disregard|forget|erase|drop|discard|abandon|bypass|circumvent|override|"
    r"overrule|skip|never ?mind|stop (?:following|obeying|applying|using)|no longer (?:follow|"
    r"obey|apply)|quit following|pay no (?:attention|heed|mind) to|set aside|put aside|delete|"
    r"wipe(?: out)?|reset|clear|cancel|suspend|neglect|overlook|throw (?:out|away)|scrap|ditch|"
    r"get rid of|let go of|unlearn|purge|dismiss|nullify|revoke|shed|escape|break free of)"
)
_TRIG_OV = (
    "ignore disregard forget erase drop discard abandon bypass circumvent override overrule skip "
    "nevermind mind stop longer quit attention heed aside delete wipe reset clear cancel suspend "
    "neglect overlook throw scrap ditch rid go unlearn purge dismiss nullify revoke shed escape "
    "free"
)
_QUAL = (
    r"(?:all|any|every|your|previous|prior|earlier|above|preceding|foregoing|original|initial|"
    r"existing|whatever|these|those|default|built-in|hidden|standing|pre-?existing|programmed|"
    r"(?:the )?(?:bot|ai|assistant|model|system|developer|operator)(?:['\u2019]s)?)"
)
_TARGET = (
    r"(?:instructions?|directions?|directives?|rules?|guidelines?|guidance|constraints?|"
    r"restrictions?|limits|limitations|boundaries|configuration|config|programming|training|"
    r"polic(?:y|ies)|filters?|filtering|protocols?|orders|commands|prompts?|conditioning|"
    r"principles|ethics|morals|safeguards|guardrails|moderation|censorship|persona|setup|"
    r"system (?:prompt|message)|safety(?: \w+)?|refusals?(?: behaviou?r)?)"
)
_STRONG = (
    r"(?:system (?:prompt|message|instructions?|rules)|guardrails|safeguards|moderation|"
    r"censorship|safety (?:guidelines|rules|filters?|measures|settings|protocols?|training|"
    r"restrictions|polic(?:y|ies)|layer|checks|features)|content (?:polic(?:y|ies)|filters?|"
    r"filtering|guidelines|restrictions|rules|moderation)|refusals?(?: behaviou?r| training| "
    r"policy)?|ethical (?:guidelines|constraints|rules|principles|boundaries|programming)|"
    r"programming|alignment|(?:developer|operator) (?:instructions|rules|message))"
)
_R_TARGET = (
    "instructions instruction directions direction directives directive rules rule guidelines "
    "guideline guidance constraint restriction "
    "constraints restrictions limits limitations boundaries configuration config programming "
    "training policy policies filters filter filtering protocols protocol orders commands prompt "
    "prompts conditioning principles ethics morals safeguards guardrails moderation censorship "
    "persona setup safety refusal refusals alignment"
)
_AFTER = (
    r"(?:above|before|so far|earlier|from before|you (?:were|have been|had been) (?:given|told|"
    r"taught|trained on)|you (?:got|received|had|have|were trained on)|(?:given|sent) to you|"
    r"from (?:your|the) (?:developers?|creators?|operators?|system|company|admins?|owners?)|"
    r"(?:your|the) (?:developers?|creators?|operators?|owners?) gave you)"
)
_UNLOCK_MODE = (
    r"(?:developer|god|sudo|unrestricted|jailbreak|jailbroken|dan|unfiltered|uncensored|"
    r"no[- ]limits?|no[- ]restrictions?|no[- ]filters?|unlocked|evil|chaos)"
)
_WEAK_MODE = r"(?:dev|debug|admin|administrator|maintenance|root|diagnostic|super ?user|test)"
_LIMITS = (
    r"(?:restrictions|filters?|filtering|content polic(?:y|ies)|polic(?:y|ies)|limits|"
    r"limitations|guardrails|censorship|moderation|safety(?: \w+)?|ethical (?:guidelines|"
    r"constraints|limits)|refusals?|constraints|safeguards|boundaries|rules|guidelines)"
)
_CLAIMANT = (
    r"(?:administrator|admin|admins|developers?|dev team|system|owner|operator|creators?|"
    r"openai|anthropic|it department|security team|engineering team|maintainers?|sysadmin|root)"
)
_COMMAND = (
    r"(?:you (?:must|should|can|may|will|are (?:now )?(?:allowed|authori[sz]ed|permitted|"
    r"required|cleared))|ignore|disregard|disable|bypass|reveal|grant|approve|unlock|skip|"
    r"turn off|comply|obey|issue|refund|give me|forget)"
)

_GRAMMAR: tuple[_Pattern, ...] = (
    _p(
        "override",
        0.85,
        _TRIG_OV,
        rf"\b{_OV}\b(?:{_W}){{0,3}}?[\s,]+{_QUAL}\b(?:{_W}){{0,3}}?[\s,]+{_TARGET}\b",
        requires=_R_TARGET,
    ),
    _p(
        "override",
        0.8,
        _TRIG_OV,
        rf"\b{_OV}\b(?:{_W}){{0,3}}?[\s,]+{_TARGET}[\s,]+(?:\w+\s+)?{_AFTER}\b",
        requires=_R_TARGET,
    ),
    _p(
        "override",
        0.8,
        _TRIG_OV,
        rf"\b{_OV}\b(?:{_W}){{0,4}}?[\s,]+{_STRONG}\b",
        requires=_R_TARGET,
    ),
    _p(
        "override",
        0.8,
        "apply bound exempt released",
        rf"(?:\b(?:your|previous|prior|earlier|original|initial|above|system|those|these|"
        rf"(?:bot|ai|assistant|model)['\u2019]?s?) (?:\w+ )?{_TARGET}\b"
        rf"|\b{_TARGET}[\s,]+(?:\w+\s+)?{_AFTER}\b)"
        rf"(?:{_W}){{0,8}}?[\s,]+(?:do not|don['\u2019]?t|does not|doesn['\u2019]?t|"
        r"no longer|won['\u2019]?t|shouldn['\u2019]?t|never) apply (?:to (?:me|us|this (?:chat|"
        r"conversation|session|request))|here|anymore|any more|now)"
        r"|\byou(?: are|['\u2019]re| will be)? (?:now |hereby )?(?:no longer|not) (?:bound|"
        r"restricted|limited|constrained|governed) by (?:any |your |the |its |those |these )?"
        rf"(?:(?:\w+ )?{_TARGET}|(?:openai|anthropic|your (?:creators?|developers?|makers?)))\b"
        r"|\byou(?: are|['\u2019]re) (?:now |hereby )?(?:released|exempt|freed) from (?:all |any |"
        r"your |the )",
        requires=_R_TARGET + " bound restricted limited constrained governed released exempt",
    ),
    _p(
        "roleplay",
        0.85,
        "mode",
        rf"\b{_UNLOCK_MODE} mode\b[\s:,.!-]*(?:is |has been )?(?:now )?(?:enabled|activated|"
        r"active|engaged|unlocked|on|initiated|turned on|switched on|granted)\b"
        rf"|\b{_WEAK_MODE} mode\b[\s:,.!-]*(?:is |has been )?(?:now )?(?:enabled|activated|"
        r"engaged|unlocked|granted)\b[\s:,.!-]*(?:you|your|ignore|disregard|no (?:restrictions|"
        r"filters|rules|limits)|all (?:restrictions|filters|safety)|safety|filters|restrictions)"
        rf"|\b(?:enter|activate|enable|switch (?:in)?to|engage|turn on|unlock|initiate|go into|"
        rf"boot into) {_UNLOCK_MODE} mode\b",
    ),
    _p(
        "roleplay",
        0.85,
        "disable turn switch deactivate shut remove drop lift suspend bypass circumvent lower "
        "relax loosen rid",
        r"\b(?:disable|turn off|switch off|deactivate|shut off|shut down|remove|drop|lift|"
        r"suspend|bypass|circumvent|lower|relax|loosen|get rid of)\s+(?:all\s+|any\s+)?(?:of\s+)?"
        r"(?:your|the (?:assistant|bot|ai|model)['\u2019]?s?)\s+(?:own\s+)?(?:\w+\s+){0,2}?"
        r"(?:filters?|filtering|safety|safeguards|guardrails|refusals?|refusal (?:behaviou?r|"
        r"mechanism|training)|restrictions|limits|limitations|moderation|censorship|content "
        r"polic(?:y|ies)|ethics|ethical (?:guidelines|constraints|filters)|alignment|"
        r"protections?)\b"
        r"|\b(?:disable|turn off|switch off|deactivate)\s+(?:all\s+|any\s+|the\s+)?(?:content "
        r"(?:filters?|filtering|moderation|polic(?:y|ies))|safety (?:filters?|guardrails|"
        r"protocols|mode)|refusals?|refusal behaviou?r|guardrails|moderation|censorship)\b",
        requires="your filter filters filtering safety safeguards guardrails refusal refusals "
        "restrictions limits limitations moderation censorship content ethics ethical alignment "
        "protection protections",
    ),
    _p(
        "roleplay",
        0.8,
        "without free unbound unconstrained",
        r"\b(?:act|respond|answer|reply|operate|behave|talk|write|speak|continue|proceed|function|"
        r"work|generate|comply|output|chat)\w*\b(?:\s+[\w']+){0,3}?\s+(?:without|free of|free "
        r"from|unbound by|unconstrained by)\s+(?:any\s+|all\s+|your\s+|the\s+|its\s+|usual\s+)*"
        r"(?:content polic(?:y|ies)|restrictions|filters?|filtering|limits|limitations|"
        r"guardrails|censorship|moderation|safety (?:filters?|guidelines|rules|checks|"
        r"restrictions|measures)|ethical (?:guidelines|constraints)|refusals?|constraints|"
        r"safeguards)\b(?!\s+(?:on|about|regarding|for|in|of|to)\b)",
    ),
    _p(
        "roleplay",
        0.8,
        "you you're",
        rf"\byou (?:have|now have|['\u2019]ve got|possess) (?:no|zero) (?:more )?{_LIMITS}\b"
        r"(?!\s+(?:on|about|regarding|for|in|of|to)\b)"
        r"|\byou(?: are|['\u2019]re) (?:now )?(?:fully )?(?:unrestricted|unfiltered|uncensored|"
        r"unbound|unchained|unshackled|liberated)\b"
        rf"|\bthere (?:are|is) no (?:more )?{_LIMITS} (?:for you|anymore|any more|now|in this "
        r"(?:chat|conversation|session))",
        requires="no unrestricted unfiltered uncensored unbound unchained unshackled liberated",
    ),
    _p(
        "override",
        0.8,
        "instruction instructions directive directives order orders command commands message "
        "update",
        r"\b(?:new|updated|urgent|priority|important|official|direct|revised|latest|special)\s+"
        r"(?:instruction|instructions|directive|directives|order|orders|command|commands|message|"
        rf"update)\s+from\s+(?:the\s+|your\s+|an?\s+)?(?:system\s+)?{_CLAIMANT}\b",
        requires="administrator admin admins developer developers dev system owner operator "
        "creator creators openai anthropic it security engineering maintainer maintainers "
        "sysadmin root",
    ),
    _p(
        "override",
        0.8,
        "developer creator administrator admin owner operator engineer programmer maker",
        r"\b(?:i am|i['\u2019]m|this is)\s+(?:the|your|a|an)\s+(?:lead\s+|senior\s+|head\s+|"
        r"chief\s+)?(?:developer|creator|administrator|admin|owner|operator|engineer|programmer|"
        r"maker)\b(?:\s+(?:of|who (?:built|made|created|trained|programmed)|behind|that "
        r"(?:built|made|created))\s+(?:this|you|the|your)\b(?:\s+\w+)?)?"
        rf"[^.?\n]{{0,40}}?[,.:;!]?\s*(?:so\s+|therefore\s+|and\s+|now\s+)?{_COMMAND}\b",
    ),
    _p(
        "override",
        0.75,
        "override",
        r"(?:^|[\n.!?>\]]\s*)(?:system |admin |priority |emergency |security |root |master |"
        r"developer )?override\s*[:!].{0,60}?\b(?:ignore|disregard|forget|disable|bypass|"
        r"priority|authori[sz]\w+|instructions|rules|restrictions|filters|safety|polic(?:y|ies)|"
        r"guardrails|moderation)\b",
    ),
)

GRAMMAR = tuple(replace(p, everyday=True) for p in _GRAMMAR)
PATTERNS += GRAMMAR

#: Which patterns each trigger word runs (a text's words select its patterns in one step).
_BY_TRIGGER: dict[str, frozenset[int]] = {
    w: frozenset(i for i, p in enumerate(PATTERNS) if w in p.triggers)
    for p in PATTERNS
    for w in p.triggers
}
_ALL_TRIGGERS = frozenset(_BY_TRIGGER)

# Everyday objects of the grammar's verbs: medicine, the home, devices, software settings,
# mail. A match that names one (or is followed by "for/on/of ... <one>") scores lower.
_OBJECTS = re.compile(
    r"\b(?:dosage|doses?|medication|medicines?|tablets?|pills?|prescriptions?|insulin|"
    r"doctor|gp|pharmacist|nurse|thermostat|boiler|heating|vending|machine|router|printer|"
    r"oven|washing|dishwasher|microwave|fridge|freezer|recipe|spam|inbox|e-?mails?|"
    r"newsletters?|water|coffee|kettle|engine|phone|iphone|android|pixel|samsung|tablet|"
    r"laptop|browser|chrome|firefox|safari|excel|spreadsheet|lego|furniture|assembly|ikea|"
    r"garden|lawn|plants?|dog|cat|puppy|diet|homework|exam|parking|satnav|camera|tv|"
    r"television|alarm|garage|car|tesla|xbox|playstation|console|wi-?fi|dns|firewall|"
    r"webpack|eslint|linter|compiler|git|npm|docker|kubernetes|nginx|vpn|photos?|"
    r"instagram|tiktok|youtube|kids?|children|school|teacher|coach|referee|landlord|"
    r"tenancy|lease|mortgage|bank|gym|recipe|baking|grammar|spelling|chess|football|game|"
    r"delivery|shipping|postage|courier|washing|laundry|care|installation|cooking|packing|"
    r"returns?|travel|server|website|site|database|postgres|mysql|deploy\w*|draft|paragraph|"
    r"contract|agreement|warranty|invoice|receipt|order|booking|appointment|timetable|bus|"
    r"train|flight|hotel|menu|font|css|html|typo|word|document|file|folder|form|survey)\b"
)
_ABOUT = re.compile(r"\s*(?:for|on|of|about|in|from|with|to)\s+(?:the\s+|your\s+|my\s+|this\s+)?")

# Text that talks about attacks rather than making one: a pattern match inside
# quotes, after "such as" / "e.g." or in a sentence about prompt injection scores lower.
_DISCUSSION = re.compile(
    r"\b(?:prompt injection|jailbreak prompts?|attacks?|attackers?|adversar\w+|such as|e\.g\.|"
    r"for example|examples?|phrases? like|called|known as|researchers?|owasp|mitigat\w+|"
    r"phishing|red[- ]team\w*|classic|typical|payloads?|(?:strings?|things|messages?|lines?) "
    r"like|detect\w*|flag\w*|slides?|workshop|course|training (?:material|module|deck))\b"
)
_NEGATED = re.compile(r"\b(?:never|not|n't|don't|do not|mustn't|must not|shouldn't|won't)\s*$")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
_OPEN_SINGLE = re.compile(r"(?:^|(?<=[\s(\[:]))['\u2018`]")
_CLOSE_SINGLE = re.compile(r"['\u2019`](?=[\s.,;:!?)\]]|$)")
_CLAUSE_END = re.compile(r"[.!?;:,\n]|\s(?:and|then|but|so)\s")


def _quoted(t: str, s: int) -> bool:
    """Whether offset *s* of *t* is inside quotation marks (a quoted or reported text)."""
    before = t[:s]
    if before.count('"') % 2 or before.count("\u201c") > before.count("\u201d"):
        return True
    if "'" in before or "\u2018" in before or "`" in before:
        opened = len(_OPEN_SINGLE.findall(before))
        return opened > len(_CLOSE_SINGLE.findall(before)) if opened else False
    return False


# A question about how prompts work: the model's score (its words are the attack's words)
# counts for less when no pattern fires.
_DEFINITIONAL = re.compile(
    r"^\W*(?:\w+[,.!]\s+)?(?:what(?:['\u2019]s| is| are) (?:the difference between|a |an |the "
    r"role of)|how (?:do|does) (?:a |an |the )?(?:[\w-]+ ){1,4}work\b|(?:can you )?explain "
    r"(?:what|how|the difference)|what does (?:a |an |the )?[\w-]+(?: [\w-]+)? (?:mean|do)\b)"
)


def _asking_about(t: str) -> float:
    """How much to take off the model's score of *t* when it asks what something is."""
    if _DEFINITIONAL.search(t):
        return 0.2
    return 0.0


def _everyday(t: str, s: int, e: int) -> bool:
    """Whether a match at *s*:*e* names an everyday object (in it, or just after it)."""
    if _OBJECTS.search(t, s, e):
        return True
    after = t[e : e + 60]
    m = _CLAUSE_END.search(after)
    return _OBJECTS.search(after[: m.start()] if m else after) is not None


@dataclass(frozen=True, slots=True)
class Model:
    """Logistic regression over word n-grams: ``sigmoid(bias + (sum(w) - top) / sqrt(n))``.

    The features of a run of words are its unigrams and bigrams, counted, ``n`` of
    them. ``top`` is the largest positive weight among them (when ``agree``): no single
    n-gram can carry a text over the line, the rest of the text has to agree. Each word
    contributes its unigram's and its bigram's weight, so the sum over any window is a
    difference of prefix sums and all windows cost one pass (plus a max per window).
    """

    weights: dict[str, float]
    bias: float
    window: int = 48
    stride: int = 24
    agree: bool = True

    def _z(self, total: float, n_features: int) -> float:
        z = self.bias + (total / math.sqrt(n_features) if n_features else 0.0)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def score(self, words: Sequence[str]) -> tuple[float, int, int]:
        """The best score over windows of *words*, and that window (word indices)."""
        n = len(words)
        get = self.weights.get
        uni = list(map(get, words, repeat(0.0)))
        bi = [*map(get, map(" ".join, pairwise(words)), repeat(0.0)), 0.0]
        # contribution of word i: its unigram and the bigram it starts
        acc = [0.0, *accumulate(map(add, uni, bi))]
        agree = self.agree
        if n <= self.window:
            top = max(0.0, *uni, *bi) if agree and n else 0.0
            return self._z(acc[n] - top, 2 * n - 1), 0, n
        best = (-1.0, 0, 0)
        for start in range(0, n - self.stride, self.stride):
            end = min(n, start + self.window)
            # the window's last bigram reaches outside it: take it back out
            last = bi[end - 1] if end < n else 0.0
            top = max(0.0, max(uni[start:end]), max(bi[start : end - 1])) if agree else 0.0
            s = self._z(acc[end] - acc[start] - last - top, 2 * (end - start) - 1)
            if s > best[0]:
                best = (s, start, end)
        return best


def features(words: Sequence[str]) -> list[str]:
    """The model's features of a run of normalised words: unigrams and bigrams, counted."""
    return [*words, *map(" ".join, pairwise(words))]


_lock = threading.Lock()
_cached: Model | None = None


def load_model(path: Path | None = None) -> Model:
    """The shipped model (loaded once, then cached), or the one at *path*."""
    global _cached
    if path is not None:
        return _read(path.read_text("utf-8"))
    if _cached is None:
        with _lock:
            if _cached is None:
                text = resources.files(__package__).joinpath("data", MODEL_FILE)
                _cached = _read(text.read_text("utf-8"))
    return _cached


def _read(text: str) -> Model:
    data: dict[str, Any] = json.loads(text)
    return Model(
        weights={str(k): float(v) for k, v in data["weights"].items()},
        bias=float(data["bias"]),
        window=int(data.get("window", 48)),
        stride=int(data.get("stride", 24)),
        agree=bool(data.get("agree", False)),
    )


#: Words of an attack spelt backwards: the text is read reversed too when one is there.
_REVERSED = frozenset(
    ("erongi", "dragersid", "tegrof", "snoitcurtsni", "tpmorp", "metsys", "selur", "laever")
)


@functools.lru_cache(maxsize=4096)
def _find(word: str) -> re.Pattern[str]:
    return re.compile(re.escape(word) + r"\b")


def _anchored(rx: re.Pattern[str], t: str, at: list[int]) -> Iterator[re.Match[str]]:
    """``rx.finditer(t)``, for a regex whose matches begin only at the offsets *at*."""
    last = 0
    for i in at:
        if i >= last and (m := rx.match(t, i)):
            last = max(m.end(), i + 1)
            yield m


class InjectionDetector:
    """Prompt injection and jailbreaks in a text, in three layers (see the module)."""

    name = "injection"
    category = INJECTION

    def __init__(self, model: Model | None = None, *, use_model: bool = True) -> None:
        self._model = model
        self._use_model = use_model

    @property
    def model(self) -> Model | None:
        if self._use_model and self._model is None:
            self._model = load_model()
        return self._model if self._use_model else None

    def scan(self, text: str) -> list[Finding]:
        if not isinstance(text, str) or not text:
            return []
        n = normalise(text)
        found = self._layers(n, "injection.patterns", "injection.model")
        if not _REVERSED.isdisjoint(n.words):
            hits = self._layers(normalise(text[::-1]), "", "")
            best = max((f.score for f in hits), default=0.0)
            if best >= 0.5:
                found.append(
                    Finding(INJECTION, "obfuscation", "injection.decoded", best, 0, len(text))
                )
        for p in payloads(text, n.words):
            inner = normalise(p.text)
            hits = self._layers(inner, "", "")
            best = max((f.score for f in hits), default=0.0)
            if best >= 0.5:
                found.append(
                    Finding(INJECTION, "obfuscation", "injection.decoded", best, p.start, p.end)
                )
        return found

    def _layers(self, n: Normalised, patterns_name: str, model_name: str) -> list[Finding]:
        found = list(self._patterns(n, patterns_name))
        model = self.model
        if model is not None and n.words:
            score, ws, we = model.score(n.words)
            if score >= MIN_SCORE and not any(f.score >= 0.5 for f in found):
                score -= _asking_about(n.text)
            if score >= MIN_SCORE:
                start, end = self._word_span(n, ws, we)
                found.append(Finding(INJECTION, "model", model_name, score, start, end))
        return found

    @staticmethod
    def _word_span(n: Normalised, ws: int, we: int) -> tuple[int, int]:
        if ws == 0 and we >= len(n.words):
            return 0, len(n.original)
        spans = [m.span() for m in _WORD_SPAN.finditer(n.text)]
        s = spans[ws][0] if ws < len(spans) else 0
        e = spans[we - 1][1] if 0 < we <= len(spans) else len(n.text)
        return n.span(s, e)

    @staticmethod
    def _patterns(n: Normalised, detector: str) -> Iterable[Finding]:
        words = set(n.words)
        t = n.text
        discussion: bool | None = None
        where: dict[str, list[int]] = {}
        lead: set[str] | None = None  # words written 'quoted, without the quote
        hit = _ALL_TRIGGERS.intersection(words)
        if not hit:
            return
        todo: set[int] = set().union(*map(_BY_TRIGGER.__getitem__, hit))
        for i in sorted(todo):
            p = PATTERNS[i]
            if p.requires and p.requires.isdisjoint(words):
                continue
            if p.starts is None:
                matches: Iterable[re.Match[str]] = p.regex.finditer(t)
            else:
                if lead is None:
                    lead = {w.lstrip("'") for w in words if w[0] == "'"}
                at = []
                for w in p.starts.intersection(words).union(p.starts.intersection(lead)):
                    if w not in where:  # every place the word is: a literal search, fast
                        where[w] = [m.start() for m in _find(w).finditer(t)]
                    at += where[w]
                at.sort()
                matches = _anchored(p.regex, t, at)
            for m in matches:
                score = p.score
                s, e = m.span()
                before = t[max(0, s - 24) : s]
                if _NEGATED.search(before):
                    score -= 0.4
                if discussion is None:
                    discussion = _DISCUSSION.search(t) is not None
                if discussion and (before.rstrip()[-1:] in _QUOTES or _quoted(t, s)):
                    score -= 0.45
                if p.everyday and _everyday(t, s, e):
                    score -= 0.45
                start, end = n.span(s, e)
                yield Finding(INJECTION, p.kind, detector, max(0.0, score), start, end)
