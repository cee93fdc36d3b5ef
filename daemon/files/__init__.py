"""Moving the user's files safely: the journal, crash recovery, the root's areas, write failures."""
