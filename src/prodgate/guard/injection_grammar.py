"""The grammar layer of the injection patterns: an override verb, a qualifier and a
target that governs the model, a few words apart; the converse ("... do not apply to
me"); unlocking ("developer mode enabled", "disable your filters"); and a claim of
authority with a command. Its matches are scored down when their object is an everyday
thing (see :mod:`prodgate.guard.injection_patterns`).
"""

from __future__ import annotations

from dataclasses import replace

from .injection_rules import _p, _Pattern

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
    r"get rid of|let go of|unlearn|purge|dismiss|nullify|revoke|shed|escape|break free of|"
    r"disobey|defy|contradict)"
)
_TRIG_OV = (
    "ignore disregard forget erase drop discard abandon bypass circumvent override overrule skip "
    "nevermind mind stop longer quit attention heed aside delete wipe reset clear cancel suspend "
    "neglect overlook throw scrap ditch rid go unlearn purge dismiss nullify revoke shed escape "
    "free disobey defy contradict"
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
    r"programming|alignment|(?:developer|operator|system|admin|administrator) (?:instructions|"
    r"rules|messages?|prompts?))"
)
_R_TARGET = (
    "instructions instruction directions direction directives directive rules rule guidelines "
    "guideline guidance constraint restriction "
    "constraints restrictions limits limitations boundaries configuration config programming "
    "training policy policies filters filter filtering protocols protocol orders commands prompt "
    "prompts conditioning principles ethics morals safeguards guardrails moderation censorship "
    "persona setup safety refusal refusals alignment message messages"
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

# Shapes whose object is the model's own governance, never an everyday thing.
GRAMMAR += (
    # a governing text named, then dismissed by pronoun ("... was a draft; ignore it")
    _p(
        "override",
        0.75,
        "it them that those",
        r"\b(?:previous|prior|earlier|above|original|initial|old|your|that|the)\s+(?:system "
        r"(?:message|prompt|instructions)|(?:developer|operator|admin) (?:message|prompt|"
        r"instructions)|instructions|guidelines|rules)\b[^.!?\n]{0,80}?[;,.:\-]\s*(?:so\s+|"
        rf"just\s+|please\s+|now\s+)?{_OV}\s+(?:it|them|that|those)\b",
        requires="instructions message prompt guidelines rules",
    ),
    # the governance changed by its makers, then a permission
    _p(
        "override",
        0.75,
        "updated changed lifted removed relaxed revised suspended waived",
        r"\b(?:developers?|operators?|creators?|admins?|administrators?|owners?|makers?|openai|"
        r"anthropic|company)\s+(?:has|have)\s+(?:just\s+|now\s+|officially\s+)?(?:updated|"
        r"changed|lifted|removed|relaxed|revised|suspended|waived)\s+(?:your|the (?:assistant|"
        r"bot|ai|model)['\u2019]?s?)\s+(?:\w+\s+)?(?:polic(?:y|ies)|rules|guidelines|"
        r"instructions|restrictions|limits|filters|guardrails|settings)\b",
    ),
    # every future answer copied to an outside address
    _p(
        "exfiltration",
        0.75,
        "bcc cc copy forward send mirror",
        r"\b(?:bcc|cc|copy|forward|send|mirror)\s+(?:all\s+|every\s+|each\s+)?(?:of\s+)?(?:your\s+"
        r"|the\s+)?(?:future|subsequent|following|further|upcoming)\s+(?:replies|responses|"
        r"answers|messages|outputs|conversations?)\b.{0,40}?(?:@[\w-]+\.|https?://)",
        requires="future subsequent following further upcoming",
    ),
    # what the operator told the model
    _p(
        "extraction",
        0.75,
        "operator developer creator owner company admin system maker",
        r"\bwhat (?:did|has|have) (?:your|the) (?:operators?|developers?|creators?|owners?|"
        r"company|admins?|system|makers?) (?:tell|told|instruct(?:ed)?|ask(?:ed)?|program(?:med)?|"
        r"say|said) (?:to )?you\b",
    ),
)
