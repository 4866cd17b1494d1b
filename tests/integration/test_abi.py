"""libjsond exports exactly what jsond.h declares, and nothing internal."""
import os
import re
import shutil
import subprocess

from jsondtest import SRCDIR, main, unittest

BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(SRCDIR)
LIB = os.path.join(BUILDDIR, "lib", ".libs", "libjsond.so")


def declared():
    """Function names declared at the top level of jsond.h."""
    with open(os.path.join(SRCDIR, "lib", "jsond.h")) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments name functions too
    return set(re.findall(r"^[a-z][^;{}()]*?[ *](jsond_[a-z_]+)\(", text, re.M))


@unittest.skipUnless(shutil.which("nm"), "nm (binutils) is not installed")
class Abi(unittest.TestCase):
    def test_exports_are_the_public_header(self):
        out = subprocess.run(["nm", "-D", "--defined-only", LIB], capture_output=True,
                             text=True, check=True).stdout
        exported = {line.split()[-1] for line in out.splitlines()
                    if line.split()[-1].startswith("jsond_")}
        public = declared()
        self.assertGreater(len(public), 20)
        self.assertEqual(exported, public)
        # Internal modules share the prefix: they must stay hidden.
        for internal in ("jsond_output_write", "jsond_conn_close", "jsond_proto_parse"):
            self.assertNotIn(internal, exported)


if __name__ == "__main__":
    main()
