"""Model families: each implements the family protocol (training/family.py) and is listed in training/registry.py."""
