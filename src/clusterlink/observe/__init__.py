"""What operators ask every day, from the store: are the links up and how fast
(`connections`)."""
