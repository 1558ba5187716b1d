"""MkDocs hook: the Sphinx roles in the package's docstrings (``:class:`~a.b.C```,
``:func:``, ``:meth:``, ``:mod:``, ...) become cross-references, linked when the API reference
documents the target and plain code when it does not, instead of showing the role's text."""

import re

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def link(match: re.Match) -> str:
    """One role as an optional autorefs reference (unresolved ones render as code)."""
    short, target = match.groups()
    title = target.rsplit(".", 1)[-1] if short else target
    return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'


def on_page_content(html: str, **kwargs: object) -> str:
    """Replace every role in a page's HTML (mkdocs calls this hook for each page)."""
    return ROLE.sub(link, html)
