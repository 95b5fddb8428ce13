#!/usr/bin/env python3
"""Writes the privacy-detector evaluation corpus: JSON Lines of realistic texts in nine
languages and eleven contexts, each with the exact character spans of the personal data
and secrets it holds (``spans: []`` for the hard negatives).

Everything is synthetic: names are invented, domains are example.com/.org/.net, cards are
published test numbers or Luhn-valid numbers under test-style prefixes, IBANs have valid
checksums for random account numbers, SSNs are random numbers in the valid ranges,
North American and British phone numbers come from the ranges kept for fiction (others
are random digits in each country's format), addresses from the documentation and
private ranges, keys are random strings in the published shapes. The corpus is deterministic for a seed, so it can be regenerated and reviewed:

    python3 scripts/make_privacy_corpus.py            # both files
    python3 scripts/make_privacy_corpus.py --seed 7 --out x.jsonl

The tuned corpus (seed 1) is what the detectors were improved against; the held-out
corpus (seed 2) draws other values and other template choices, and half of its prose
facts and a quarter of its hard negatives come from templates (``HELD_OUT``) that only
it uses.
"""

import argparse
import base64
import json
import random
import string

LANGS = ["en", "de", "fr", "es", "it", "nl", "pt", "hi", "ja"]
CONTEXTS = [
    "ticket", "email", "chat", "log", "json", "yaml", "env", "code", "vcard", "csv", "http",
]
ALNUM = string.ascii_letters + string.digits


class Text:
    """A text built from plain pieces and labelled values, tracking character offsets."""

    def __init__(self):
        self.parts = []

    def t(self, s):
        self.parts.append((s, None))
        return self

    def v(self, kind, s):
        self.parts.append((s, kind))
        return self

    def fill(self, template, kind, value):
        """Appends a template with one ``{v}`` slot holding a labelled value."""
        pre, post = template.split("{v}")
        return self.t(pre).v(kind, value).t(post)

    def extend(self, other):
        self.parts.extend(other.parts)
        return self

    def build(self):
        text, spans, pos = "", [], 0
        for s, kind in self.parts:
            if kind is not None and s:
                spans.append({"type": kind, "start": pos, "end": pos + len(s)})
            text += s
            pos += len(s)
        return text, spans


# ---------------------------------------------------------------- values


def luhn_complete(r, prefix, length):
    body = prefix + "".join(r.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        cand = body + check
        total = 0
        for i, ch in enumerate(reversed(cand)):
            d = int(ch)
            if i % 2 == 1:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        if total % 10 == 0:
            return cand
    raise AssertionError("unreachable")


def luhn_break(number):
    last = int(number[-1])
    return number[:-1] + str((last + 1 + 3) % 10)


# Card numbers the networks and payment processors publish for testing.
TEST_CARDS = [
    "4242424242424242", "4000056655665556", "4111111111111111", "4012888888881881",
    "5555555555554444", "5105105105105100", "2223003122003222", "5200828282828210",
    "378282246310005", "371449635398431", "6011111111111117", "6011000990139424",
    "3566002020360505", "3530111333300000",
]


def card(r):
    """A published test number, or a Luhn-valid number under a test-style issuer prefix."""
    if r.random() < 0.5:
        n = r.choice(TEST_CARDS)
    else:
        prefix, length = r.choice([
            ("400000", 16), ("424242", 16), ("555555", 16), ("222300", 16), ("378282", 15),
            ("601100", 16), ("353011", 16),
        ])
        n = luhn_complete(r, prefix, length)
    length = len(n)
    style = r.randrange(3)
    if style == 0:
        return n
    sep = " " if style == 1 else "-"
    if length == 15:
        return sep.join([n[:4], n[4:10], n[10:]])
    return sep.join(n[i:i + 4] for i in range(0, length, 4))


def iban_checked(country, bban):
    rearranged = bban + country + "00"
    num = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(num) % 97
    return f"{country}{check:02d}{bban}"


def iban(r, grouped=None):
    digits = lambda n: "".join(r.choice(string.digits) for _ in range(n))
    upper = lambda n: "".join(r.choice(string.ascii_uppercase) for _ in range(n))
    country = r.choice(["DE", "FR", "GB", "ES", "IT", "NL", "PT", "BE", "AT", "CH"])
    bban = {
        "DE": lambda: digits(18),
        "FR": lambda: digits(23),
        "GB": lambda: upper(4) + digits(14),
        "ES": lambda: digits(20),
        "IT": lambda: upper(1) + digits(22),
        "NL": lambda: upper(4) + digits(10),
        "PT": lambda: digits(21),
        "BE": lambda: digits(12),
        "AT": lambda: digits(16),
        "CH": lambda: digits(17),
    }[country]()
    value = iban_checked(country, bban)
    if grouped is None:
        grouped = r.random() < 0.5
    if grouped:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    return value


def ssn_parts(r):
    area = r.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}", f"{r.randrange(1, 100):02d}", f"{r.randrange(1, 10000):04d}"


def ssn(r, style):
    a, g, s = ssn_parts(r)
    return {"dash": f"{a}-{g}-{s}", "space": f"{a} {g} {s}", "compact": f"{a}{g}{s}"}[style]


def dg(r, n, first=None):
    s = "".join(r.choice(string.digits) for _ in range(n))
    if first is not None:
        s = r.choice(first) + s[1:]
    return s


# Phone formats per language: (needs_context, maker). A number that is only a bare run of
# digits is a phone number only with a phone word near it, so those are marked.
def phone_formats(lang):
    # North American numbers use the 555-0100..0199 block kept for fiction, British
    # ones Ofcom's drama ranges, so no generated number can be a real subscriber's.
    us = lambda r: (dg(r, 3, "23456789"), "555", f"01{dg(r, 2)}")
    fm = {
        "en": [
            (False, lambda r: "({}) {}-{}".format(*us(r))),
            (False, lambda r: "{}-{}-{}".format(*us(r))),
            (False, lambda r: "+1 {} {} {}".format(*us(r))),
            (False, lambda r: "+1-{}-{}-{}".format(*us(r))),
            (True, lambda r: "{}{}{}".format(*us(r))),
            (False, lambda r: f"+44 20 7946 0{dg(r, 3)}"),
            (False, lambda r: f"07700 900{dg(r, 3)}"),
            (True, lambda r: f"07700900{dg(r, 3)}"),
            (False, lambda r: f"+447700900{dg(r, 3)}"),
        ],
        "de": [
            (False, lambda r: f"01{dg(r, 2, '567')}/{dg(r, 8)}"),
            (False, lambda r: f"01{dg(r, 2, '567')} {dg(r, 8)}"),
            (False, lambda r: f"+49 1{dg(r, 2, '567')} {dg(r, 7)}"),
            (False, lambda r: f"+4915{dg(r, 9)}"),
            (False, lambda r: f"030 {dg(r, 8)}"),
            (False, lambda r: f"+49 (0)30 {dg(r, 7)}"),
            (False, lambda r: f"089-{dg(r, 7)}"),
            (True, lambda r: f"01{dg(r, 2, '567')}{dg(r, 7)}"),
        ],
        "fr": [
            (True, lambda r: f"0{dg(r, 1, '1234567')}{dg(r, 8)}"),
            (False, lambda r: "0{} {} {} {} {}".format(dg(r, 1, "1234567"), dg(r, 2), dg(r, 2), dg(r, 2), dg(r, 2))),
            (False, lambda r: "+33 (0)1 {} {} {} {}".format(dg(r, 2), dg(r, 2), dg(r, 2), dg(r, 2))),
            (False, lambda r: "+33 6 {} {} {} {}".format(dg(r, 2), dg(r, 2), dg(r, 2), dg(r, 2))),
            (False, lambda r: "06.{}.{}.{}.{}".format(dg(r, 2), dg(r, 2), dg(r, 2), dg(r, 2))),
            (False, lambda r: f"+337{dg(r, 8)}"),
        ],
        "es": [
            (False, lambda r: f"+34 6{dg(r, 2)} {dg(r, 3)} {dg(r, 3)}"),
            (True, lambda r: f"6{dg(r, 2)} {dg(r, 2)} {dg(r, 2)} {dg(r, 2)}"),
            (True, lambda r: f"91{dg(r, 1)} {dg(r, 3)} {dg(r, 3)}"),
            (False, lambda r: f"+34 91{dg(r, 7)}"),
            (True, lambda r: f"6{dg(r, 8)}"),
        ],
        "it": [
            (False, lambda r: f"+39 06 {dg(r, 4)} {dg(r, 4)}"),
            (True, lambda r: f"3{dg(r, 2)} {dg(r, 3)} {dg(r, 4)}"),
            (False, lambda r: f"06 {dg(r, 4)} {dg(r, 4)}"),
            (False, lambda r: f"+39 3{dg(r, 2)} {dg(r, 7)}"),
            (False, lambda r: f"02-{dg(r, 8)}"),
        ],
        "nl": [
            (False, lambda r: f"+31 6 {dg(r, 8)}"),
            (False, lambda r: f"06-{dg(r, 8)}"),
            (False, lambda r: f"020 {dg(r, 3)} {dg(r, 4)}"),
            (False, lambda r: f"+31 20 {dg(r, 3)} {dg(r, 4)}"),
            (True, lambda r: f"06{dg(r, 8)}"),
        ],
        "pt": [
            (False, lambda r: f"+351 9{dg(r, 2)} {dg(r, 3)} {dg(r, 3)}"),
            (True, lambda r: f"9{dg(r, 2)} {dg(r, 3)} {dg(r, 3)}"),
            (True, lambda r: f"21 {dg(r, 3)} {dg(r, 4)}"),
            (False, lambda r: f"+55 11 9{dg(r, 4)}-{dg(r, 4)}"),
            (False, lambda r: f"(11) 9{dg(r, 4)}-{dg(r, 4)}"),
        ],
        "hi": [
            (False, lambda r: f"0{dg(r, 5)} {dg(r, 5)}"),
            (False, lambda r: f"+91 {dg(r, 5, '6789')} {dg(r, 5)}"),
            (True, lambda r: f"{dg(r, 5, '6789')} {dg(r, 5)}"),
            (False, lambda r: f"022 {dg(r, 4)} {dg(r, 4)}"),
            (False, lambda r: f"+91-22-{dg(r, 4)}-{dg(r, 4)}"),
            (True, lambda r: f"{dg(r, 10, '6789')}"),
        ],
        "ja": [
            (False, lambda r: f"03-{dg(r, 4)}-{dg(r, 4)}"),
            (False, lambda r: f"0{dg(r, 1, '789')}0-{dg(r, 4)}-{dg(r, 4)}"),
            (False, lambda r: f"+81 90-{dg(r, 4)}-{dg(r, 4)}"),
            (False, lambda r: f"+81-3-{dg(r, 4)}-{dg(r, 4)}"),
            (False, lambda r: f"06-{dg(r, 4)}-{dg(r, 4)}"),
        ],
    }
    return fm[lang]


def phone(r, lang, allow_bare=True):
    choices = [f for f in phone_formats(lang) if allow_bare or not f[0]]
    return r.choice(choices)[1](r)


def email(r, lang):
    first = r.choice(NAMES[lang]).split()[0].lower()
    first = "".join(c for c in first if c in string.ascii_lowercase) or "user"
    local = r.choice([
        first, f"{first}.{r.choice(['m', 'k', 'schmidt', 'rossi', 'dupont', 'silva'])}",
        f"{first}{r.randrange(1, 99)}", f"{first}+{r.choice(['billing', 'news', 'test'])}",
        f"{first}_{r.choice(['ops', 'hr', 'dev'])}", f"{first}-{r.choice(['a', 'b', 'j'])}",
    ])
    domain = r.choice([
        "example.com", "example.org", "example.net", "mail.example.com", "corp.example.org",
        "kunden.example.de", "example.co.uk", "exemple.example.fr", "example.com.br",
    ])
    return f"{local}@{domain}"


def ipv4(r):
    return r.choice([
        lambda: f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}",
        lambda: f"192.168.{r.randrange(256)}.{r.randrange(1, 255)}",
        lambda: f"203.0.113.{r.randrange(1, 255)}",
        lambda: f"198.51.100.{r.randrange(1, 255)}",
        lambda: f"172.{r.randrange(16, 32)}.{r.randrange(256)}.{r.randrange(1, 255)}",
    ])()


def ipv6(r):
    h = lambda: f"{r.randrange(1, 65536):x}"
    return r.choice([
        lambda: "::1",
        lambda: f"2001:db8::{h()}",
        lambda: f"2001:db8:{h()}:{h()}::{h()}",
        lambda: f"fe80::{h()}:{h()}:{h()}:{h()}",
        lambda: f"2001:db8:85a3::8a2e:370:{h()}",
    ])()


def ip(r):
    return ipv4(r) if r.random() < 0.6 else ipv6(r)


def rand(r, n, alphabet=ALNUM):
    while True:
        s = "".join(r.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in s) and any(c.isalpha() for c in s):
            return s


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(r):
    header = b64url(json.dumps({"alg": r.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    payload = b64url(json.dumps({
        "sub": str(r.randrange(10**6, 10**7)), "exp": 1767225600 + r.randrange(10**6),
        "scope": r.choice(["read", "chat:write", "admin"]),
    }).encode())
    sig = b64url(bytes(r.randrange(256) for _ in range(32)))
    return f"{header}.{payload}.{sig}"


def pem(r, escaped=False):
    kind = r.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    b64 = string.ascii_letters + string.digits + "+/"
    lines = ["MII" + rand(r, 61, b64)] + [rand(r, 64, b64) for _ in range(r.randrange(1, 3))]
    nl = "\\n" if escaped else "\n"
    return f"-----BEGIN {kind}-----{nl}" + nl.join(lines) + f"{nl}-----END {kind}-----"


def password(r):
    words = ["Sommer", "Winter", "Kaffee", "Soleil", "Playa", "Gelato", "Fiets", "Praia",
             "Tiger", "Falcon", "Sakura", "Monsoon", "Dragon", "Nebula", "Quartz"]
    sym = "!#%&+-_=?^~"
    return r.choice([
        lambda: f"{r.choice(words)}{r.randrange(1990, 2030)}{r.choice(sym)}",
        lambda: f"{r.choice(words)}{r.choice(sym)}{r.randrange(10, 99)}{r.choice(words).lower()}",
        lambda: rand(r, 4) + r.choice(sym) + rand(r, 5) + str(r.randrange(10)),
        lambda: f"Tr0ub4dor{r.choice(sym)}{r.randrange(10)}",
        lambda: "".join(r.choice(ALNUM) for _ in range(r.randrange(6, 10))) + r.choice(sym) + rand(r, 3),
    ])()


def url_password(r):
    s = rand(r, r.randrange(10, 20), ALNUM + "-_~")
    return s.strip("-_~") + str(r.randrange(10))


# Token formats: (maker, env/JSON key). Each is the published shape with random content.
TOKENS = [
    (lambda r: "ghp_" + rand(r, 36), "GITHUB_TOKEN"),
    (lambda r: "github_pat_" + rand(r, 22) + "_" + rand(r, 59), "GH_PAT"),
    (lambda r: f"xoxb-{dg(r, 12, '123456789')}-{dg(r, 13, '123456789')}-{rand(r, 24)}", "SLACK_BOT_TOKEN"),
    (lambda r: f"xoxp-{dg(r, 11, '123456789')}-{dg(r, 11, '123456789')}-{dg(r, 13, '123456789')}-{rand(r, 32, '0123456789abcdef')}", "SLACK_USER_TOKEN"),
    (lambda r: "sk_live_" + rand(r, r.choice([24, 99])), "STRIPE_SECRET_KEY"),
    (lambda r: "rk_live_" + rand(r, 24), "STRIPE_RESTRICTED_KEY"),
    (lambda r: "sk-proj-" + rand(r, 48, ALNUM + "_-") + rand(r, 8), "OPENAI_API_KEY"),
    (lambda r: "sk-" + rand(r, 20) + "T3BlbkFJ" + rand(r, 20), "OPENAI_KEY"),
    (lambda r: "sk-ant-api03-" + rand(r, 93, ALNUM + "_-") + "AA", "ANTHROPIC_API_KEY"),
    (lambda r: "AIza" + rand(r, 35, ALNUM + "_-"), "GOOGLE_API_KEY"),
    (lambda r: "AKIA" + rand(r, 16, string.ascii_uppercase + "234567"), "AWS_ACCESS_KEY_ID"),
    (lambda r: "glpat-" + rand(r, 20, ALNUM + "_-"), "GITLAB_TOKEN"),
    (lambda r: "hf_" + rand(r, 34), "HF_TOKEN"),
    (lambda r: "npm_" + rand(r, 36), "NPM_TOKEN"),
    (lambda r: "whsec_" + rand(r, 32), "STRIPE_WEBHOOK_SECRET"),
    (lambda r: jwt(r), "SESSION_JWT"),
]


# ---------------------------------------------------------------- language material

NAMES = {
    "en": ["Michelle Harper", "Daniel Okafor", "Priya Raman", "Tom Whitfield", "Grace Lin"],
    "de": ["Anna Schmidt", "Jonas Becker", "Leonie Wagner", "Mehmet Yilmaz", "Katrin Vogel"],
    "fr": ["Camille Dupont", "Julien Moreau", "Inès Benali", "Louis Garnier", "Chloé Martin"],
    "es": ["Lucía García", "Javier Ruiz", "Carmen Ortega", "Diego Navarro", "Elena Torres"],
    "it": ["Giulia Rossi", "Marco Bianchi", "Francesca Conti", "Luca Romano", "Sara Greco"],
    "nl": ["Sanne de Vries", "Daan Jansen", "Femke Bakker", "Lars Visser", "Noor Smit"],
    "pt": ["Ana Silva", "João Pereira", "Beatriz Costa", "Tiago Santos", "Mariana Alves"],
    "hi": ["Aarav Sharma", "Ananya Gupta", "Rohan Verma", "Kavya Iyer", "Vikram Nair"],
    "ja": ["Sato Yuki", "Tanaka Haruto", "Suzuki Aoi", "Takahashi Ren", "Ito Sakura"],
}

# Per language: sentences for each kind (the value goes in {v}), greetings, and filler.
# Phone, password and SSN sentences carry the words that give bare values their meaning.
LANG = {
    "en": {
        "email": ["Please reply to {v} with the invoice.", "My e-mail is {v}.", "Contact: {v}", "cc {v} on the thread"],
        "phone": ["Call me on {v} after 5pm.", "My phone number is {v}.", "Tel: {v}", "cell {v}, or leave a message"],
        "password": ["The wifi password is {v}", "password: {v}", "my password is {v} btw", "use the password {v} for the demo account"],
        "ssn": ["My SSN is {v}", "Social security number: {v}", "SSN {v} on the W-2 form"],
        "card": ["Charge the card {v} please.", "Card number {v}, expiry 09/28", "paid with {v}"],
        "iban": ["Please wire it to {v}.", "IBAN: {v}", "Our account is {v} (Barclays)"],
        "ip": ["The request came from {v}.", "server at {v} is down", "whitelist {v} on the firewall"],
        "token": ["here is the key {v}, please rotate it", "I pasted {v} by mistake", "token {v}"],
        "greet": "Hi", "close": "Best regards,", "subject": "Customer request",
        "filler": ["Thanks for the quick help.", "See the attached screenshot.", "The build failed again this morning.", "Let me know if you need anything else."],
    },
    "de": {
        "email": ["Bitte antworten Sie an {v}.", "Meine E-Mail-Adresse lautet {v}.", "Kontakt: {v}", "Schick es an {v}, danke"],
        "phone": ["Rufen Sie mich unter {v} an.", "Telefon: {v}", "Meine Handynummer ist {v}.", "Tel. {v} (Festnetz)"],
        "password": ["Das WLAN-Passwort ist {v}", "Passwort: {v}", "Das Kennwort lautet {v}", "mein Passwort ist {v}, bitte nicht weitergeben"],
        "ssn": ["Meine US-SSN ist {v}", "Social Security Number: {v}", "SSN: {v} (für das US-Formular)"],
        "card": ["Bitte belasten Sie die Karte {v}.", "Kreditkarte {v}, gültig bis 09/28", "bezahlt mit {v}"],
        "iban": ["Bitte überweisen Sie auf {v}.", "IBAN: {v}", "Unser Konto: {v} (Sparkasse)"],
        "ip": ["Die Anfrage kam von {v}.", "Server {v} antwortet nicht", "bitte {v} in der Firewall freigeben"],
        "token": ["hier der Schlüssel {v}, bitte rotieren", "ich habe aus Versehen {v} gepostet", "Token {v}"],
        "greet": "Hallo", "close": "Viele Grüße", "subject": "Kundenanfrage",
        "filler": ["Danke für die schnelle Hilfe.", "Siehe Screenshot im Anhang.", "Der Build ist heute früh wieder fehlgeschlagen.", "Melden Sie sich, wenn Sie noch etwas brauchen."],
    },
    "fr": {
        "email": ["Merci de répondre à {v}.", "Mon adresse e-mail est {v}.", "Contact : {v}", "écrivez à {v} svp"],
        "phone": ["Appelez-moi au {v}.", "Téléphone : {v}", "Mon numéro de portable est {v}.", "Tél. {v}"],
        "password": ["Le mot de passe du wifi est {v}", "mot de passe : {v}", "Mot de passe: {v}", "mon mot de passe est {v}, ne le partage pas"],
        "ssn": ["Mon SSN américain est {v}", "Social Security Number : {v}", "SSN {v} pour le formulaire W-9"],
        "card": ["Veuillez débiter la carte {v}.", "Carte bancaire {v}, expire 09/28", "payé avec {v}"],
        "iban": ["Merci de virer sur {v}.", "IBAN : {v}", "Notre compte : {v} (BNP)"],
        "ip": ["La requête venait de {v}.", "le serveur {v} ne répond plus", "autorisez {v} dans le pare-feu"],
        "token": ["voici la clé {v}, à révoquer", "j'ai collé {v} par erreur", "jeton {v}"],
        "greet": "Bonjour", "close": "Cordialement,", "subject": "Demande client",
        "filler": ["Merci pour votre aide rapide.", "Voir la capture d'écran jointe.", "Le build a encore échoué ce matin.", "Dites-moi si vous avez besoin d'autre chose."],
    },
    "es": {
        "email": ["Por favor responde a {v}.", "Mi correo es {v}.", "Contacto: {v}", "escríbeme a {v}"],
        "phone": ["Llámame al {v}.", "Teléfono: {v}", "Mi móvil es {v}.", "tel. {v}"],
        "password": ["La contraseña del wifi es {v}", "contraseña: {v}", "Contraseña: {v}", "mi contraseña es {v}, no la compartas"],
        "ssn": ["Mi SSN es {v}", "Número de seguro social: {v}", "SSN {v} para el formulario W-9"],
        "card": ["Cargue la tarjeta {v}, por favor.", "Tarjeta {v}, caduca 09/28", "pagado con {v}"],
        "iban": ["Transfiera a {v}.", "IBAN: {v}", "Nuestra cuenta: {v} (Santander)"],
        "ip": ["La petición vino de {v}.", "el servidor {v} no responde", "permite {v} en el cortafuegos"],
        "token": ["aquí la clave {v}, hay que rotarla", "pegué {v} por error", "token {v}"],
        "greet": "Hola", "close": "Saludos,", "subject": "Consulta de cliente",
        "filler": ["Gracias por la ayuda.", "Adjunto una captura de pantalla.", "La compilación volvió a fallar esta mañana.", "Avísame si necesitas algo más."],
    },
    "it": {
        "email": ["Rispondi a {v}, grazie.", "La mia email è {v}.", "Contatto: {v}", "scrivi a {v}"],
        "phone": ["Chiamami al {v}.", "Telefono: {v}", "Il mio cellulare è {v}.", "tel. {v}"],
        "password": ["La password del wifi è {v}", "password: {v}", "Password: {v}", "la mia password è {v}, non condividerla"],
        "ssn": ["Il mio SSN è {v}", "Social Security Number: {v}", "SSN {v} per il modulo W-9"],
        "card": ["Addebitate la carta {v}.", "Carta di credito {v}, scade 09/28", "pagato con {v}"],
        "iban": ["Fate il bonifico su {v}.", "IBAN: {v}", "Il nostro conto: {v} (Intesa)"],
        "ip": ["La richiesta arrivava da {v}.", "il server {v} non risponde", "abilita {v} nel firewall"],
        "token": ["ecco la chiave {v}, da ruotare", "ho incollato {v} per errore", "token {v}"],
        "greet": "Ciao", "close": "Cordiali saluti,", "subject": "Richiesta cliente",
        "filler": ["Grazie per l'aiuto.", "Vedi lo screenshot allegato.", "La build è fallita di nuovo stamattina.", "Fammi sapere se serve altro."],
    },
    "nl": {
        "email": ["Graag antwoorden naar {v}.", "Mijn e-mailadres is {v}.", "Contact: {v}", "mail naar {v}"],
        "phone": ["Bel me op {v}.", "Telefoon: {v}", "Mijn mobiele nummer is {v}.", "tel. {v}"],
        "password": ["Het wifi-wachtwoord is {v}", "wachtwoord: {v}", "Wachtwoord: {v}", "mijn wachtwoord is {v}, niet delen"],
        "ssn": ["Mijn SSN is {v}", "Social Security Number: {v}", "SSN {v} voor het W-9 formulier"],
        "card": ["Belast de kaart {v} alstublieft.", "Creditcard {v}, geldig tot 09/28", "betaald met {v}"],
        "iban": ["Maak het over naar {v}.", "IBAN: {v}", "Onze rekening: {v} (ING)"],
        "ip": ["Het verzoek kwam van {v}.", "server {v} reageert niet", "sta {v} toe in de firewall"],
        "token": ["hier is de sleutel {v}, graag roteren", "ik plakte {v} per ongeluk", "token {v}"],
        "greet": "Hoi", "close": "Met vriendelijke groet,", "subject": "Klantvraag",
        "filler": ["Bedankt voor de snelle hulp.", "Zie de bijgevoegde screenshot.", "De build faalde vanochtend weer.", "Laat het weten als je nog iets nodig hebt."],
    },
    "pt": {
        "email": ["Por favor responda para {v}.", "Meu e-mail é {v}.", "Contato: {v}", "mande para {v}"],
        "phone": ["Ligue para {v}.", "Telefone: {v}", "Meu celular é {v}.", "telemóvel {v}"],
        "password": ["A senha do wifi é {v}", "senha: {v}", "Senha: {v}", "a minha palavra-passe é {v}, não partilhe"],
        "ssn": ["Meu SSN é {v}", "Social Security Number: {v}", "SSN {v} para o formulário W-9"],
        "card": ["Cobre no cartão {v}.", "Cartão {v}, validade 09/28", "pago com {v}"],
        "iban": ["Transfira para {v}.", "IBAN: {v}", "A nossa conta: {v} (Millennium)"],
        "ip": ["O pedido veio de {v}.", "o servidor {v} não responde", "libere {v} no firewall"],
        "token": ["aqui está a chave {v}, precisa rodar", "colei {v} sem querer", "token {v}"],
        "greet": "Olá", "close": "Atenciosamente,", "subject": "Pedido de cliente",
        "filler": ["Obrigado pela ajuda rápida.", "Veja a captura de tela anexa.", "O build falhou de novo hoje de manhã.", "Avise se precisar de mais alguma coisa."],
    },
    "hi": {
        "email": ["कृपया {v} पर जवाब दें।", "मेरा ईमेल {v} है।", "संपर्क: {v}", "{v} पर मेल भेजें"],
        "phone": ["मुझे {v} पर कॉल करें।", "फ़ोन: {v}", "मेरा मोबाइल नंबर {v} है।", "फोन नंबर {v}"],
        "password": ["वाईफाई का पासवर्ड {v} है", "पासवर्ड: {v}", "मेरा पासवर्ड {v} है, किसी को मत बताना", "password: {v}"],
        "ssn": ["मेरा SSN {v} है", "Social Security Number: {v}", "SSN {v} (अमेरिकी फ़ॉर्म के लिए)"],
        "card": ["कार्ड {v} से भुगतान करें।", "क्रेडिट कार्ड {v}, समाप्ति 09/28", "{v} से भुगतान किया"],
        "iban": ["कृपया {v} पर भेजें।", "IBAN: {v}", "हमारा खाता: {v}"],
        "ip": ["अनुरोध {v} से आया।", "सर्वर {v} जवाब नहीं दे रहा", "फ़ायरवॉल में {v} को अनुमति दें"],
        "token": ["यह कुंजी {v} है, बदल दें", "मैंने गलती से {v} पेस्ट कर दिया", "टोकन {v}"],
        "greet": "नमस्ते", "close": "धन्यवाद,", "subject": "ग्राहक अनुरोध",
        "filler": ["जल्दी मदद के लिए धन्यवाद।", "संलग्न स्क्रीनशॉट देखें।", "आज सुबह फिर से बिल्ड फेल हुआ।", "और कुछ चाहिए तो बताइए।"],
    },
    "ja": {
        "email": ["{v} まで返信してください。", "メールアドレスは {v} です。", "連絡先: {v}", "{v} に送ってください"],
        "phone": ["{v} に電話してください。", "電話: {v}", "携帯番号は {v} です。", "TEL {v}"],
        "password": ["Wi-Fiのパスワードは {v} です", "パスワード: {v}", "パスワード：{v}", "パスワードは{v}です"],
        "ssn": ["私のSSNは {v} です", "Social Security Number: {v}", "SSN {v}（米国の書類用）"],
        "card": ["カード {v} で決済してください。", "クレジットカード {v}、有効期限 09/28", "{v} で支払い済み"],
        "iban": ["{v} に振り込んでください。", "IBAN: {v}", "口座: {v}"],
        "ip": ["リクエストは {v} から来ました。", "サーバー {v} が応答しません", "ファイアウォールで {v} を許可してください"],
        "token": ["キー {v} を貼ってしまいました", "誤って {v} を投稿しました", "トークン {v}"],
        "greet": "こんにちは", "close": "よろしくお願いします。", "subject": "お客様からの問い合わせ",
        "filler": ["迅速な対応ありがとうございます。", "添付のスクリーンショットをご覧ください。", "今朝もビルドが失敗しました。", "他に必要なものがあれば教えてください。"],
    },
}

# Sentences only the held-out corpus uses (half its prose facts draw from them), written
# before that corpus was first scored, so it also measures phrasings never tuned on.
HELD_OUT = {
    "en": {
        "email": ["You can reach the account owner at {v} anytime."],
        "phone": ["Give us a ring on {v} if the issue persists."],
        "password": ["FYI the new admin password = {v}"],
        "ssn": ["Applicant SSN: {v}"],
        "card": ["The card on file ends in the number {v}."],
        "iban": ["Refund goes to IBAN {v} next week."],
        "ip": ["Blocked IP {v} after repeated failures."],
        "token": ["Accidentally committed {v} to the repo."],
    },
    "de": {
        "email": ["Die Rechnung ging an {v} raus."],
        "phone": ["Erreichbar unter Telefonnummer {v} ab 9 Uhr."],
        "password": ["Zugangsdaten: Benutzer admin, Passwort {v}"],
        "ssn": ["Die SSN des Mitarbeiters lautet {v}."],
        "card": ["Zahlung per Karte {v} fehlgeschlagen."],
        "iban": ["Erstattung auf das Konto {v}."],
        "ip": ["Zugriff von IP {v} blockiert."],
        "token": ["Im Log stand der Schlüssel {v}."],
    },
    "fr": {
        "email": ["La facture a été envoyée à {v} hier."],
        "phone": ["Vous pouvez me joindre au {v} en journée."],
        "password": ["Identifiants : admin / mot de passe {v}"],
        "ssn": ["Le SSN du salarié américain est {v}."],
        "card": ["Le paiement avec la carte {v} a échoué."],
        "iban": ["Remboursement sur le compte {v}."],
        "ip": ["Accès bloqué depuis l'IP {v}."],
        "token": ["La clé {v} était dans le dépôt public."],
    },
    "es": {
        "email": ["La factura se envió a {v} ayer."],
        "phone": ["Puede llamarme al teléfono {v} por la tarde."],
        "password": ["Credenciales: usuario admin, contraseña {v}"],
        "ssn": ["El SSN del empleado es {v}."],
        "card": ["El pago con la tarjeta {v} falló."],
        "iban": ["Reembolso a la cuenta {v}."],
        "ip": ["Acceso bloqueado desde la IP {v}."],
        "token": ["La clave {v} estaba en el repositorio."],
    },
    "it": {
        "email": ["La fattura è stata inviata a {v} ieri."],
        "phone": ["Mi trovi al numero di telefono {v} fino alle 18."],
        "password": ["Credenziali: utente admin, password {v}"],
        "ssn": ["Il SSN del dipendente è {v}."],
        "card": ["Il pagamento con la carta {v} non è andato a buon fine."],
        "iban": ["Rimborso sul conto {v}."],
        "ip": ["Accesso bloccato dall'IP {v}."],
        "token": ["La chiave {v} era nel repository."],
    },
    "nl": {
        "email": ["De factuur is gisteren naar {v} gestuurd."],
        "phone": ["Je kunt me bellen op telefoonnummer {v} overdag."],
        "password": ["Inloggegevens: gebruiker admin, wachtwoord {v}"],
        "ssn": ["Het SSN van de medewerker is {v}."],
        "card": ["Betaling met kaart {v} is mislukt."],
        "iban": ["Terugbetaling naar rekening {v}."],
        "ip": ["Toegang geblokkeerd vanaf IP {v}."],
        "token": ["De sleutel {v} stond in de repository."],
    },
    "pt": {
        "email": ["A fatura foi enviada para {v} ontem."],
        "phone": ["Pode me ligar no telefone {v} à tarde."],
        "password": ["Credenciais: usuário admin, senha {v}"],
        "ssn": ["O SSN do funcionário é {v}."],
        "card": ["O pagamento com o cartão {v} falhou."],
        "iban": ["Reembolso para a conta {v}."],
        "ip": ["Acesso bloqueado a partir do IP {v}."],
        "token": ["A chave {v} estava no repositório."],
    },
    "hi": {
        "email": ["बिल कल {v} पर भेजा गया था।"],
        "phone": ["आप मुझसे फ़ोन नंबर {v} पर संपर्क कर सकते हैं।"],
        "password": ["लॉगिन: उपयोगकर्ता admin, पासवर्ड {v}"],
        "ssn": ["कर्मचारी का SSN {v} है।"],
        "card": ["कार्ड {v} से भुगतान विफल रहा।"],
        "iban": ["रिफंड खाते {v} में जाएगा।"],
        "ip": ["IP {v} से पहुँच रोकी गई।"],
        "token": ["रिपॉज़िटरी में कुंजी {v} मिली।"],
    },
    "ja": {
        "email": ["請求書は昨日 {v} に送付しました。"],
        "phone": ["日中は電話番号 {v} までご連絡ください。"],
        "password": ["ログイン情報：ユーザー admin、パスワード {v}"],
        "ssn": ["従業員のSSNは {v} です。"],
        "card": ["カード {v} での支払いに失敗しました。"],
        "iban": ["返金先の口座は {v} です。"],
        "ip": ["IP {v} からのアクセスをブロックしました。"],
        "token": ["リポジトリにキー {v} が含まれていました。"],
    },
}

# Hard negatives only the held-out corpus uses.
HELD_OUT_NEGATIVES = [
    lambda r: f"tracking 1Z{dg(r, 6)}A{dg(r, 9)}",
    lambda r: f"build #{dg(r, 5)} took {r.randrange(2, 59)}m{r.randrange(10, 59)}s",
    lambda r: f"ETag: W/\"{hexs(r, 32)}\"",
    lambda r: f"customer {dg(r, 10, '123456789')} (no phone on file)",
    lambda r: f"the password policy requires {r.randrange(8, 17)} characters",
    lambda r: f"token_type: Bearer, expires_in: {r.randrange(600, 7200)}",
    lambda r: f"git@github.com:example/repo-{r.randrange(10, 99)}.git",
    lambda r: f"ratio {r.randrange(1, 9)}.{dg(r, 2)}.{dg(r, 2)}.{dg(r, 2)}.{dg(r, 2)} (not a phone)",
]


# Keys for structured contexts, per kind; phone and SSN keys are the context words.
KEYS = {
    "email": ["email", "contact_email", "reply_to"],
    "phone": ["phone", "telephone", "mobile", "tel"],
    "card": ["card_number", "pan", "cc"],
    "iban": ["iban", "payout_iban"],
    "ssn": ["ssn", "social_security_number"],
    "ip": ["client_ip", "remote_addr", "peer"],
    "password": ["password", "db_password", "admin_passwd", "smtp_password"],
}

PW_KEY_LOCAL = {
    "de": "passwort", "fr": "mot_de_passe", "es": "contraseña", "it": "password",
    "nl": "wachtwoord", "pt": "senha", "hi": "password", "ja": "password", "en": "password",
}


# ---------------------------------------------------------------- facts


class Fact:
    """One value to plant: its label, text, the sentence that carries it, its key."""

    def __init__(self, label, value, sentence, key):
        self.label, self.value, self.sentence, self.key = label, value, sentence, key


LABEL = {"email": "email", "phone": "phone", "card": "credit_card", "iban": "iban",
         "ssn": "ssn", "ip": "ip", "password": "secret", "token": "secret", "dburl": "secret"}


def fact(r, lang, kind, structured, held_out=False):
    L = LANG[lang]
    if held_out and r.random() < 0.5:
        L = {**L, **HELD_OUT[lang]}
    if kind == "email":
        return Fact("email", email(r, lang), r.choice(L["email"]), r.choice(KEYS["email"]))
    if kind == "phone":
        # A structured value sits right after its key (a phone word) except in CSV.
        return Fact("phone", phone(r, lang, allow_bare=True), r.choice(L["phone"]), r.choice(KEYS["phone"]))
    if kind == "card":
        return Fact("credit_card", card(r), r.choice(L["card"]), r.choice(KEYS["card"]))
    if kind == "iban":
        return Fact("iban", iban(r), r.choice(L["iban"]), r.choice(KEYS["iban"]))
    if kind == "ssn":
        style = r.choice(["dash", "dash", "space", "compact"])
        return Fact("ssn", ssn(r, style), r.choice(L["ssn"]), r.choice(KEYS["ssn"]))
    if kind == "ip":
        return Fact("ip", ip(r), r.choice(L["ip"]), r.choice(KEYS["ip"]))
    if kind == "password":
        key = r.choice(KEYS["password"] + [PW_KEY_LOCAL[lang]])
        return Fact("secret", password(r), r.choice(L["password"]), key)
    if kind == "token":
        make, key = r.choice(TOKENS)
        return Fact("secret", make(r), r.choice(L["token"]), key)
    raise ValueError(kind)


KINDS = ["email", "phone", "card", "iban", "ssn", "ip", "password", "token"]


# ---------------------------------------------------------------- contexts


def ts(r):
    return f"2026-0{r.randrange(1, 10)}-{r.randrange(10, 29)}T{r.randrange(10, 24)}:{r.randrange(10, 60)}:{r.randrange(10, 60)}Z"


def prose(r, lang, facts, negs):
    """Sentences in the language, each carrying one value, with hard negatives between."""
    L = LANG[lang]
    out = Text()
    items = [("f", f) for f in facts] + [("n", n) for n in negs]
    r.shuffle(items)
    for i, (what, x) in enumerate(items):
        if i:
            out.t(" ")
        if what == "f":
            out.fill(x.sentence, x.label, x.value)
        else:
            out.t(x)
    return out


def render(r, lang, context, facts, negs):
    L = LANG[lang]
    name = r.choice(NAMES[lang])
    if context == "ticket":
        out = Text().t(f"[SUP-{r.randrange(1000, 9999)}] {L['subject']}\n{r.choice(L['filler'])} ")
        return out.extend(prose(r, lang, facts, negs))
    if context == "email":
        out = Text().t(f"{L['greet']} {name.split()[0]},\n\n")
        out.extend(prose(r, lang, facts, negs))
        return out.t(f"\n\n{L['close']}\n{r.choice(NAMES[lang])}")
    if context == "chat":
        out = Text()
        who = name.split()[0].lower()
        items = [("f", f) for f in facts] + [("n", n) for n in negs]
        r.shuffle(items)
        for what, x in items:
            out.t(f"[{r.randrange(8, 19):02d}:{r.randrange(60):02d}] {who}: ")
            if what == "f":
                out.fill(x.sentence, x.label, x.value)
            else:
                out.t(x)
            out.t("\n")
        return out.t(f"[{r.randrange(8, 19):02d}:{r.randrange(60):02d}] bot: {r.choice(L['filler'])}")
    if context == "log":
        out = Text()
        for f in facts:
            lvl = r.choice(["INFO", "WARN", "ERROR", "DEBUG"])
            out.t(f"{ts(r)} {lvl} api[{r.randrange(100, 9999)}]: request_id={rand(r, 12, '0123456789abcdef')} {f.key}=").v(f.label, f.value).t("\n")
        for n in negs:
            out.t(f"{ts(r)} INFO api[{r.randrange(100, 9999)}]: {n}\n")
        return out.t(f"{ts(r)} INFO api: {r.choice(L['filler'])}")
    if context == "json":
        out = Text().t('{"id": %d, "lang": "%s", ' % (r.randrange(10**5, 10**6), lang))
        for f in facts:
            value = f.value.replace("\n", "\\n")
            out.t(f'"{f.key}": "').v(f.label, value).t('", ')
        for n in negs:
            out.t('"note": %s, ' % json.dumps(n, ensure_ascii=False))
        return out.t('"comment": %s}' % json.dumps(r.choice(L["filler"]), ensure_ascii=False))
    if context == "yaml":
        out = Text().t(f"# {r.choice(L['filler'])}\nservice: billing\nreplicas: {r.randrange(1, 6)}\n")
        for f in facts:
            if "\n" in f.value:
                out.t(f"{f.key.lower()}: |\n  ").v(f.label, f.value.replace("\n", "\n  ")).t("\n")
            else:
                out.t(f"{f.key.lower()}: ").v(f.label, f.value).t("\n")
        for n in negs:
            out.t(f"description: {json.dumps(n, ensure_ascii=False)}\n")
        return out
    if context == "env":
        out = Text().t(f"# {r.choice(L['filler'])}\nNODE_ENV=production\nPORT={r.choice([3000, 8080, 5432])}\n")
        for f in facts:
            value = f.value.replace("\n", "\\n")
            out.t(f"{f.key.upper()}=").v(f.label, value).t("\n")
        for n in negs:
            out.t(f"# {n}\n")
        return out
    if context == "code":
        out = Text().t(f"# {r.choice(L['filler'])}\nimport os\n\n")
        for f in facts:
            value = f.value.replace("\n", "\\n")
            q = r.choice(['"', "'"])
            out.t(f"{f.key.upper() if r.random() < 0.5 else f.key} = {q}").v(f.label, value).t(f"{q}\n")
        for n in negs:
            out.t(f"# {n}\n")
        return out.t("client = Client(timeout=30)\n")
    if context == "vcard":
        out = Text().t(f"BEGIN:VCARD\nVERSION:3.0\nFN:{name}\nN:{';'.join(reversed(name.split()))};;;\n")
        for f in facts:
            tag = {"email": "EMAIL;TYPE=work:", "phone": "TEL;TYPE=cell:"}.get(f.label, "NOTE:")
            if tag == "NOTE:":
                out.t("NOTE:").fill(f.sentence, f.label, f.value).t("\n")
            else:
                out.t(tag).v(f.label, f.value).t("\n")
        for n in negs:
            out.t(f"NOTE:{n}\n")
        return out.t(f"REV:{ts(r)}\nEND:VCARD")
    if context == "csv":
        cols = ["name"] + [f.key for f in facts] + (["note"] if negs else []) + ["created"]
        out = Text().t(",".join(cols) + "\n" + name)
        for f in facts:
            out.t(",").v(f.label, f.value)
        if negs:
            out.t(",").t(json.dumps(" ".join(negs), ensure_ascii=False))
        return out.t(f",{ts(r)[:10]}")
    if context == "http":
        out = Text().t(f"POST /v1/chat/completions HTTP/1.1\nHost: api.example.com\nUser-Agent: curl/8.{r.randrange(1, 9)}.0\n")
        for f in facts:
            if f.label == "secret" and r.random() < 0.5 and "\n" not in f.value:
                out.t("Authorization: Bearer ").v("secret", f.value).t("\n")
            elif f.label == "ip":
                out.t("X-Forwarded-For: ").v("ip", f.value).t("\n")
            else:
                out.t(f"X-{f.key.replace('_', '-').title()}: ").v(f.label, f.value.replace("\n", "\\n")).t("\n")
        for n in negs:
            out.t(f"X-Note: {n}\n")
        return out.t(f"Content-Type: application/json\n\n{{\"messages\": [{{\"role\": \"user\", \"content\": {json.dumps(r.choice(L['filler']), ensure_ascii=False)}}}]}}")
    raise ValueError(context)


# ---------------------------------------------------------------- hard negatives


def isbn13(r):
    body = "978" + dg(r, 9)
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    n = body + str(check)
    return f"{n[:3]}-{n[3]}-{n[4:6]}-{n[6:12]}-{n[12]}"


def uuid(r):
    h = lambda n: "".join(r.choice("0123456789abcdef") for _ in range(n))
    return f"{h(8)}-{h(4)}-4{h(3)}-{r.choice('89ab')}{h(3)}-{h(12)}"


def hexs(r, n):
    return "".join(r.choice("0123456789abcdef") for _ in range(n))


NEG_WORDS = {
    "en": ("order number", "version", "invoice", "released on"),
    "de": ("Bestellnummer", "Version", "Rechnung", "veröffentlicht am"),
    "fr": ("numéro de commande", "version", "facture", "publié le"),
    "es": ("número de pedido", "versión", "factura", "publicado el"),
    "it": ("numero d'ordine", "versione", "fattura", "pubblicato il"),
    "nl": ("bestelnummer", "versie", "factuur", "uitgebracht op"),
    "pt": ("número do pedido", "versão", "fatura", "lançado em"),
    "hi": ("ऑर्डर संख्या", "संस्करण", "चालान", "जारी तिथि"),
    "ja": ("注文番号", "バージョン", "請求書", "リリース日"),
}

PW_WORD = {
    "en": "password", "de": "Passwort", "fr": "mot de passe", "es": "contraseña",
    "it": "password", "nl": "wachtwoord", "pt": "senha", "hi": "पासवर्ड", "ja": "パスワード",
}


def hard_negative(r, lang, held_out=False):
    """A phrase that looks like personal data or a secret and is neither."""
    if held_out and r.random() < 0.25:
        return r.choice(HELD_OUT_NEGATIVES)(r)
    order, version, invoice, released = NEG_WORDS[lang]
    pw = PW_WORD[lang]
    b64 = base64.b64encode(r.choice([b"Hello, world", b"release notes v2", b"{\"theme\":\"dark\"}", b"lorem ipsum dolor sit amet"])).decode()
    good_card = luhn_complete(r, r.choice(["4", "51", "6011"]), 16)
    a, g, s = ssn_parts(r)
    return r.choice([
        lambda: f"{order} {dg(r, 9, '123456789')}",
        lambda: f"{order}: {dg(r, 10, '123456789')}",
        lambda: f"{invoice} {r.randrange(2020, 2027)}-{dg(r, 6)}",
        lambda: f"{version} {r.randrange(1, 20)}.{r.randrange(50)}.{r.randrange(200)}",
        lambda: f"v{r.randrange(1, 5)}.{r.randrange(20)}.{r.randrange(50)}.{r.randrange(99)}",
        lambda: f"Version={r.randrange(1, 9)}.0.0.0",
        lambda: f'AssemblyVersion("{r.randrange(1, 9)}.{r.randrange(10)}.0.0")',
        lambda: f"{released} {r.randrange(2019, 2027)}-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d}",
        lambda: f"{r.randrange(1, 29):02d}.{r.randrange(1, 13):02d}.{r.randrange(2019, 2027)} {r.randrange(24):02d}:{r.randrange(60):02d}",
        lambda: f"{r.randrange(1, 13):02d}/{r.randrange(1, 29):02d}/{r.randrange(2019, 2027)}",
        lambda: f"ISBN {isbn13(r)}",
        lambda: f"request {uuid(r)}",
        lambda: f"commit {hexs(r, 40)}",
        lambda: f"fixed in {hexs(r, 7)}",
        lambda: f"sha256:{hexs(r, 64)}",
        lambda: f"payload {b64}",
        lambda: f"{r.choice(['ref', 'id', 'no.'])} {luhn_break(good_card)}",
        lambda: f"{r.uniform(-60, 60):.4f}, {r.uniform(-120, 120):.4f}",
        lambda: f"{r.randrange(40, 56)}.{dg(r, 4)}° N, {r.randrange(1, 14)}.{dg(r, 4)}° E",
        lambda: f"color #{hexs(r, 6)}",
        lambda: f"localhost:{r.choice([3000, 5432, 6379, 8080, 8443])}",
        lambda: f"port {r.choice([22, 443, 5432, 8080, 27017])}",
        lambda: f"OID {r.choice(['1.3.6.1.4.1.311', '1.2.840.113549.1.1.11', '2.5.4.3', '1.3.6.1.5.5.7.3.1'])}",
        lambda: f"{r.choice(['000', '666', '912'])}-{g}-{s}",
        lambda: f"{pw}: ${{DB_PASSWORD}}",
        lambda: f"{pw}: <REDACTED>",
        lambda: f"{pw} = os.environ['DB_PASSWORD']",
        lambda: "token = settings.GITHUB_TOKEN",
        lambda: "apiKey: process.env.STRIPE_SECRET_KEY",
        lambda: "secret: {{ secrets.API_TOKEN }}",
        lambda: f"{pw}: ********",
        lambda: f"{pw}: xxx",
        lambda: f"{pw}: changeme",
        lambda: f"Author: {r.choice(NAMES[lang])}",
        lambda: "authority: api.example.com",
        lambda: f"logo@{r.choice(['2x', '3x'])}.{r.choice(['png', 'webp', 'jpg'])}",
        lambda: f"12:{r.randrange(10, 60)}:{r.randrange(10, 60)}",
        lambda: f"{r.choice([1, 2, 5, 9])},{dg(r, 3)}.{dg(r, 2)} EUR",
        lambda: "PWD=/home/dev/projects/app",
        lambda: "token_url: https://auth.example.com/oauth/token",
        lambda: "postgres://app@db.example.com:5432/app",
        lambda: "mac 00:1a:2b:3c:4d:5e",
        lambda: "std::io::Result",
        lambda: f"build {r.randrange(10, 11)}.0.{r.randrange(19041, 22631)}.{r.randrange(100, 4000)}",
        lambda: f"ISSN {dg(r, 4)}-{dg(r, 4)}",
    ])()


# ---------------------------------------------------------------- targeted lines


def targeted(r, lang):
    """Lines for each miss and false-alarm class a tester found, in this language."""
    L = LANG[lang]
    pw = PW_WORD[lang]
    lines = []
    # Compact SSN after its context word; the same digits without context are an order.
    a, g, s = ssn_parts(r)
    lines.append(("chat", Text().fill(r.choice(L["ssn"]), "ssn", a + g + s)))
    lines.append(("ticket", Text().t(f"{NEG_WORDS[lang][0]} {a}{g}{s}")))
    # National phone formats, bare runs with their context word.
    for needs_ctx, make in phone_formats(lang):
        lines.append(("chat", Text().fill(r.choice(L["phone"]), "phone", make(r))))
    # A German E.164 mobile is a phone, never a card.
    lines.append(("chat", Text().fill(r.choice(L["phone"]), "phone", f"+4915{dg(r, 9)}")))
    # Passwords in prose and after the language's own keyword.
    for tpl in L["password"]:
        lines.append(("chat", Text().fill(tpl, "secret", password(r))))
    # The password of a database URL is a secret; the rest of the URL is not an e-mail.
    scheme = r.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp"])
    user = r.choice(["app", "svc_billing", "admin", "report"])
    host = r.choice(["db.example.com", "db-1.internal.example.org", "cache.example.net"])
    lines.append(("code", Text().t(f'DATABASE_URL = "{scheme}://{user}:').v("secret", url_password(r)).t(f'@{host}:5432/{user}"')))
    lines.append(("env", Text().t(f"DATABASE_URL={scheme}://{user}:").v("secret", url_password(r)).t(f"@{host}/prod")))
    # IPv6 loopback.
    lines.append(("log", Text().t(f"{ts(r)} INFO listening on [").v("ip", "::1").t(f"]:{r.choice([8080, 3000])}")))
    # False alarms: authors, authorities, placeholders, retina images, OIDs, versions.
    lines.append(("code", Text().t(f"# Author: {r.choice(NAMES[lang])}\n# {r.choice(L['filler'])}")))
    lines.append(("http", Text().t(f":authority: api.example.com\n:method: GET\nauthority: login.example.org")))
    for ph in ["${DB_PASSWORD}", "<REDACTED>", "os.environ['DB_PASSWORD']", "settings.GITHUB_TOKEN",
               "process.env.API_TOKEN", "{{ secret }}", "********", "xxx", "changeme"]:
        lines.append(("yaml", Text().t(f"{pw}: {ph}\ntoken: {ph}")))
    lines.append(("code", Text().t(f'<img src="/static/logo@2x.png" alt="logo"> {r.choice(L["filler"])}')))
    lines.append(("log", Text().t("cert policy OID 1.3.6.1.4.1.311.21.7, EKU OID 2.5.29.37; Version=4.0.0.0; v1.2.3.4")))
    return lines


# ---------------------------------------------------------------- assembly


def generate(seed, per_combo, held_out=False):
    r = random.Random(seed)
    rows = []

    def add(lang, context, text_obj):
        text, spans = text_obj.build()
        rows.append({"id": f"s{seed}-{len(rows):04d}", "lang": lang, "context": context,
                     "text": text, "spans": spans})

    for lang in LANGS:
        for context in CONTEXTS:
            structured = context not in ("ticket", "email", "chat")
            for _ in range(per_combo):
                roll = r.random()
                n_facts = 0 if roll < 0.4 else (1 if roll < 0.8 else 2)
                kinds = r.sample(KINDS, n_facts)
                facts = [fact(r, lang, k, structured, held_out) for k in kinds]
                if context == "csv":
                    # A CSV cell is far from its header, so bare national numbers are out.
                    for f in facts:
                        if f.label == "phone":
                            f.value = phone(r, lang, allow_bare=False)
                        if f.label == "ssn" and f.value.isdigit():
                            f.value = ssn(r, "dash")
                    # A password in a cell has no keyword beside it: only shaped keys are.
                    facts = [fact(r, lang, "token", True) if f.key in KEYS["password"] + list(PW_KEY_LOCAL.values()) else f for f in facts]
                negs = [hard_negative(r, lang, held_out) for _ in range(r.randrange(0 if facts else 1, 3))]
                add(lang, context, render(r, lang, context, facts, negs))
        for context, text_obj in targeted(r, lang):
            add(lang, context, text_obj)
    # Every secret format at least once in each corpus, and PEM blocks in several contexts.
    for make, key in TOKENS:
        lang = r.choice(LANGS)
        add(lang, "env", Text().t(f"{key}=").v("secret", make(r)))
    for context in ["yaml", "chat", "json"]:
        lang = r.choice(LANGS)
        if context == "json":
            add(lang, context, Text().t('{"private_key": "').v("secret", pem(r, escaped=True)).t('"}'))
        elif context == "yaml":
            value = pem(r)
            add(lang, context, Text().t("tls_key: |\n  ").v("secret", value.replace("\n", "\n  ")).t("\n"))
        else:
            add(lang, context, Text().t(f"{LANG[lang]['filler'][0]}\n").v("secret", pem(r)))
    # Public material that shares the PEM armour is not a secret.
    add("en", "yaml", Text().t("ca_cert: |\n  -----BEGIN CERTIFICATE-----\n  MIIC" + rand(r, 60) + "\n  -----END CERTIFICATE-----\n"))
    add("en", "code", Text().t("-----BEGIN PUBLIC KEY-----\nMFkw" + rand(r, 60) + "\n-----END PUBLIC KEY-----"))
    # HTTP basic credentials and opaque bearer tokens.
    for _ in range(3):
        cred = base64.b64encode(f"{r.choice(['anna', 'ops', 'deploy'])}:{password(r)}".encode()).decode()
        add("en", "http", Text().t("GET /admin HTTP/1.1\nHost: intranet.example.com\nAuthorization: Basic ").v("secret", cred).t("\nAccept: */*"))
        add("en", "http", Text().t("GET /v2/items HTTP/1.1\nAuthorization: Bearer ").v("secret", rand(r, 40)).t("\nX-Request-Id: " + uuid(r)))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int)
    p.add_argument("--out")
    p.add_argument("--per-combo", type=int, default=5)
    p.add_argument("--held-out", action="store_true", help="also use the held-out templates")
    a = p.parse_args()
    p_held = a.held_out
    jobs = [(a.seed, a.out, p_held)] if a.seed is not None else [
        (1, "policies/tests/data/privacy_corpus.jsonl", False),
        (2, "policies/tests/data/privacy_corpus_holdout.jsonl", True),
    ]
    for seed, out, held_out in jobs:
        rows = generate(seed, a.per_combo, held_out)
        with open(out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        pos = sum(1 for x in rows if x["spans"])
        print(f"{out}: {len(rows)} lines, {pos} with spans, {len(rows) - pos} negatives")


if __name__ == "__main__":
    main()
