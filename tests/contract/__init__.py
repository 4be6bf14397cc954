"""One conversation, three platforms: the contract every chat adapter keeps.

`script.py` holds the conversation, written once as data; `drivers/` plays it through
the Telegram fake (python-telegram-bot), the Discord fake (discord.py) and the terminal;
`test_contract.py` runs it. What a platform cannot do (Discord has no chat migration)
is declared by its driver with the reason, and shows as a skipped test.
"""
