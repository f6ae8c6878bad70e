"""Training: entries (participants' folders), and `competition run`, which trains one,
predicts, writes and submits."""
