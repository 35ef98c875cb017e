"""What the rows become: one folder per output dialect, one module per source kind in each."""
