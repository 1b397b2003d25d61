"""Money: prices (`pricing`), the double-entry books (`ledger`), and where jobs meet them (`billing`)."""
