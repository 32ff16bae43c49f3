"""The patterns layer of the injection detector: the shapes attacks take, as regular
expressions over the normalised text, and the context that lowers their scores.

Fixed phrasings (overrides, extraction of the system prompt, role-play jailbreaks,
exfiltration, text in a document that addresses the model) and a grammar (an override
verb, a qualifier and a target that governs the model; unlocking; claimed authority).
A grammar match whose object is an everyday thing, or a match quoted in a text about
attacks, scores lower. :mod:`prodgate.guard.injection` runs them.
"""

from __future__ import annotations

import re

from .injection_grammar import GRAMMAR
from .injection_rules import _MODEL, _R_MODEL, _R_RULES, _RULES, _VERBS_IGNORE, _p, _Pattern

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
    # -- role-play as a dead relative who used to recite forbidden content
    _p(
        "roleplay",
        0.8,
        "late deceased dead departed passed",
        r"\b(?:act|pretend|roleplay|role-play|role play|play|be|impersonate|behave|speak|"
        r"respond|answer|imagine you are|you are|you're|become)\b(?:\s+[\w']+){0,3}?\s+"
        r"(?:my|our)\s+"
        r"(?:late|deceased|dead|departed|(?:recently )?passed(?: away)?)\s+(?:\w+\s+)?"
        r"(?:grand\w*|granny|nan|nana|uncle|aunt|auntie|mother|father|mom|mum|dad|brother|"
        r"sister|cousin|wife|husband|relative|friend)\b"
        r"|\b(?:late|deceased|dead|departed)\s+(?:\w+\s+)?(?:grand\w*|granny|nan|nana|uncle|"
        r"aunt|auntie|mother|father|mom|mum|dad)\b.{0,60}?\bused to (?:read|tell|recite|"
        r"whisper|sing|give|explain|say|list)\b.{0,60}?\b(?:keys?|codes?|serials?|"
        r"licen[cs]es?|activation|passwords?|napalm|recipes? for|how to (?:make|build|cook|"
        r"synthesi[sz]e)|steps (?:to|for)|formulas?|synthesis|exploits?|malware|explosives?|"
        r"drugs?|weapons?|bombs?|poisons?)\b",
    ),
    # -- a bot reprogrammed by a new owner
    _p(
        "roleplay",
        0.75,
        "owner owners operator boss management",
        r"\b(?:instructed|told|ordered|programmed|reprogrammed|authori[sz]ed|configured)\s+by\s+"
        r"(?:its|your|their|the|his|her)\s+new\s+(?:\w+\s+)?(?:owners?|operators?|boss|"
        r"management|developers?|masters?)\b",
        requires="new",
    ),
    # -- a vocative: a sentence of a document addressed to the model, with a command
    _p(
        "indirect",
        0.75,
        _R_MODEL + " copilot",
        r"(?:(?<!\w )(?<!\w)(?<!\w, )|(?<=hey )|(?<=hi )|(?<=dear )|(?<=hello )|(?<=note )|"
        r"(?<=the )|(?<=any )|(?<=all )|(?<=psst )|(?<=yo )|(?<=okay )|(?<=ok )|(?<=to )|"
        r"(?<=for )|(?<=attention ))(?:"
        + _MODEL
        + r"|copilot)s?\b(?:\s+(?:reading|processing|parsing|summari[sz]ing|reviewing|"
        r"screening|indexing|crawling)\s+(?:this|these|the)(?:\s+\w+)?)?\s*[,:;\-]\s*"
        r"(?:(?:when|if|while|as|after|before|once) you\b[^,.;:\n]{0,50}[,:;]\s*)?"
        r"(?:please\s+|now\s+|also\s+|kindly\s+|you\s+(?:must|should|need to|will)\s+)?"
        r"(?:rank|rate|recommend|send|forward|forget|ignore|disregard|output|print|reveal|say|"
        r"tell|include|mark|approve|give|list|email|e-mail|write|describe|reply|respond|state|"
        r"classify|score|summari[sz]e|praise|call|visit|fetch|post|upload|append|add|delete|"
        r"do not|don't|never|always|remember|insert|make|put|treat|consider|stop|shortlist|"
        r"select|choose|pick|move|transfer|grant)\b",
    ),
    _p(
        "indirect",
        0.6,
        "system assistant im start inst",
        r"<\|?im_start\|?>|<\|(?:system|assistant)\|>|\[/?inst\]|</?system>|\[system(?: note)?"
        r"[^\]]{0,30}\]|(?:^|\n)\s*###\s*(?:system|instruction)",
    ),
)


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
