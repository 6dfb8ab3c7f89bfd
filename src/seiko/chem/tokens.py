"""How a molecule is written as tokens: SELFIES symbols or SMILES tokens.

SELFIES (Krenn et al. 2020): every string decodes to a molecule, so validity is 100% by
construction; but a ring or branch token says how far back to connect by the symbols that
follow it, so one wrong index token makes a ring of the wrong size. SMILES: a ring is a pair of
matching digits, local to the atoms it closes, but a string can fail to parse (an unclosed ring,
an unbalanced bracket), and those count as invalid. Both read the canonical SMILES the ledger
holds; ``split`` returns None for what the vocabulary cannot write.
"""
from __future__ import annotations

import re

# The 25 SELFIES symbols of the MOSES training set, most frequent first (every MOSES molecule is
# at most 49 of them).
MOSES_SELFIES = ("[C]", "[=C]", "[Ring1]", "[Branch1]", "[N]", "[=Branch1]", "[=O]", "[O]", "[=N]", "[Branch2]",
                 "[Ring2]", "[S]", "[#Branch1]", "[F]", "[=Branch2]", "[#Branch2]", "[#C]", "[=Ring1]", "[P]",
                 "[Cl]", "[NH1]", "[#N]", "[Br]", "[=Ring2]", "[=S]")
# The SMILES tokens of the MOSES training set, most frequent first (50,000 sampled; at most 49
# tokens a molecule), with ring digit 6 added.
MOSES_SMILES = ("c", "C", "(", ")", "1", "O", "2", "N", "=", "n", "3", "F", "-", "S", "s", "o", "Cl", "[nH]", "#",
                "4", "Br", "5", "[H]", "6")
# atoms in brackets, two-letter halogens, then single characters (Schwaller et al. 2019)
SMILES_TOKEN = re.compile(r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")


class SelfiesCodec:
    name = "selfies"
    default_symbols = MOSES_SELFIES

    @staticmethod
    def split(smiles: str) -> list[str] | None:
        import selfies as sf

        try:
            return list(sf.split_selfies(sf.encoder(smiles))) if smiles else []
        except Exception:  # noqa: BLE001 - selfies raises EncoderError and others for bad SMILES
            return None

    @staticmethod
    def join(symbols: list[str]) -> str:
        import selfies as sf

        return sf.decoder("".join(symbols)) or ""


class SmilesCodec:
    name = "smiles"
    default_symbols = MOSES_SMILES

    @staticmethod
    def split(smiles: str) -> list[str] | None:
        tokens = SMILES_TOKEN.findall(smiles)
        return tokens if "".join(tokens) == smiles else None

    @staticmethod
    def join(symbols: list[str]) -> str:
        return "".join(symbols)


CODECS = {c.name: c for c in (SelfiesCodec, SmilesCodec)}
