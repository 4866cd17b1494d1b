"""libjsond exports exactly what jsond.h declares, and nothing internal.

The build makes the export list (lib/jsond.sym) from jsond.h with a sed
regex over its lines. This test must not share that method, or a blind spot
of the regex (a declaration split over lines, a name with a digit, a macro
in front) would be a blind spot of the test too. So it asks the C compiler
to preprocess jsond.h (comments gone, macros expanded, line markers saying
which file each line came from), tokenizes what came from jsond.h itself,
and finds the function declarators at file scope; then it compares them
with the dynamic symbols libjsond.so defines (nm -D --defined-only).
"""
import os
import re
import shlex
import shutil
import subprocess

from jsondtest import SRCDIR, main, unittest

BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(SRCDIR)
LIB = os.path.join(BUILDDIR, "lib", ".libs", "libjsond.so")
HEADER = os.path.join(SRCDIR, "lib", "jsond.h")
CC = shlex.split(os.environ.get("CC") or "cc")

# Names a declarator can be followed by "(" without being a function.
NOT_NAMES = {"__attribute__", "__attribute", "__asm__", "__asm", "asm", "__extension__",
             "__declspec", "_Alignas", "_Static_assert", "__typeof__", "typeof"}

TOKEN_RE = re.compile(r"""
      (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<str>"(?:\\.|[^"\\])*" | '(?:\\.|[^'\\])*')
    | (?P<num>\.?[0-9](?:[eEpP][+-]|[A-Za-z0-9_.])*)
    | (?P<punct>\.\.\.|->|[^\sA-Za-z0-9_])
    | (?P<space>\s+)
""", re.X)

MARKER_RE = re.compile(r'^#\s*(?:line\s+)?\d+\s+"((?:\\.|[^"\\])*)"')


def compiler_flags():
    """Include flags for jansson.h, from pkg-config when it knows them."""
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--cflags", "jansson"], capture_output=True, text=True)
        if r.returncode == 0:
            return shlex.split(r.stdout)
    return []


def header_tokens():
    """The tokens of jsond.h after preprocessing, without those of the
    headers it includes."""
    out = subprocess.run(CC + ["-E", "-std=c11"] + compiler_flags() + [HEADER],
                         capture_output=True, text=True, check=True).stdout
    mine = os.path.realpath(HEADER)
    tokens, current = [], None
    for line in out.splitlines():
        m = MARKER_RE.match(line)
        if m:
            current = os.path.realpath(m.group(1)) == mine
            continue
        if line.startswith("#"):  # #pragma and the like
            continue
        if not current:
            continue
        pos = 0
        while pos < len(line):
            t = TOKEN_RE.match(line, pos)
            if not t:
                raise AssertionError("cannot tokenize %r" % line[pos:])
            pos = t.end()
            if t.lastgroup != "space":
                tokens.append((t.lastgroup, t.group()))
    return tokens


def declared_functions(tokens):
    """(declared, defined): the names of the functions declared at file
    scope, and of those defined there (with a body, e.g. static inline).

    A file-scope declaration runs to a ';' outside braces and parentheses.
    Within it, a function declarator is an identifier directly followed by
    '(' outside any parentheses of the declaration (so a parameter, or the
    name of a function-pointer typedef or parameter, is not one), in a
    declaration that is not a typedef; braces (struct bodies) are skipped.
    """
    declared, defined = set(), set()
    decl, braces, parens = [], 0, 0
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if text == "{":
            if braces == 0 and parens == 0 and decl and decl[-1][1] == ")":
                # A function body: the declaration so far names a definition.
                defined |= names_in(decl)
                decl = []
                depth = 0
                while i < len(tokens):
                    depth += {"{": 1, "}": -1}.get(tokens[i][1], 0)
                    i += 1
                    if depth == 0:
                        break
                continue
            braces += 1
        elif text == "}":
            braces -= 1
        elif braces == 0:
            if text == "(":
                parens += 1
            elif text == ")":
                parens -= 1
            if text == ";" and parens == 0:
                declared |= names_in(decl)
                decl = []
            else:
                decl.append((kind, text, parens - (text == "(")))
        i += 1
    assert braces == 0 and parens == 0 and not decl, "unbalanced header"
    return declared, defined


def names_in(decl):
    """Function declarator names of one declaration (see above)."""
    if not decl or decl[0][1] in ("typedef", "static"):
        return set()
    names = set()
    for (kind, text, depth), nxt in zip(decl, decl[1:]):
        if kind == "id" and depth == 0 and nxt[1] == "(" and text not in NOT_NAMES:
            names.add(text)
    return names


def exported():
    out = subprocess.run(["nm", "-D", "--defined-only", LIB], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split()}


@unittest.skipUnless(shutil.which("nm"), "nm (binutils) is not installed")
class Abi(unittest.TestCase):
    def test_parser_finds_what_the_regex_would_miss(self):
        """The declaration finder itself, on text the build's regex
        mishandles: a name on its own line, a digit, a macro in front,
        function pointers, a typedef, an inline definition."""
        text = """
            typedef void (*jsond_cb)(int jsond_param(void));
            struct jsond_s { int (*jsond_member)(void); };
            const char *
            jsond_split(int a,
                        int b);
            int jsond_utf8_check(const char *s) __attribute__((nonnull(1)));
            void jsond_takes_cb(void (*jsond_fp)(void *arg), void *arg), jsond_second(void);
            static inline int jsond_inline(void) { return 0; }
            extern int jsond_variable;
        """
        tokens = []
        for t in TOKEN_RE.finditer(text):
            if t.lastgroup != "space":
                tokens.append((t.lastgroup, t.group()))
        declared, defined = declared_functions(tokens)
        self.assertEqual(declared, {"jsond_split", "jsond_utf8_check", "jsond_takes_cb",
                                    "jsond_second"})
        self.assertEqual(defined, set())  # static: not part of any ABI

    def test_exports_are_the_public_header(self):
        declared, defined = declared_functions(header_tokens())
        self.assertEqual(defined, set(), "jsond.h defines functions: they would not be exported")
        # STYLE.md: exports are limited to jsond_*.
        self.assertEqual({n for n in declared if not n.startswith("jsond_")}, set())
        # Known public functions of every area are found ...
        for name in ("jsond_version", "jsond_context", "jsond_log", "jsond_errors_add",
                     "jsond_config_parse", "jsond_config_unref", "jsond_server_new",
                     "jsond_server_shutdown", "jsond_reply", "jsond_reply_error"):
            self.assertIn(name, declared)
        self.assertGreater(len(declared), 20)

        syms = exported()
        ours = {s for s in syms if s.startswith("jsond_")}
        self.assertEqual(ours, declared)
        # Internal modules share the prefix: they must stay hidden.
        for internal in ("jsond_output_write", "jsond_conn_new", "jsond_conn_close",
                         "jsond_proto_parse", "jsond_router_route", "jsond_req_new"):
            self.assertNotIn(internal, syms)
        # And nothing else leaks out under another name: every exported
        # function is ours (the C library's and the toolchain's own
        # symbols are not defined here).
        others = {s for s in syms - ours if not s.startswith("_")}
        self.assertEqual(others, set())


if __name__ == "__main__":
    main()
