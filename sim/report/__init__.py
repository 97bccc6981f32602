"""Reports (DESIGN §6): the verdict and numbers in words, the report's blocks, their HTML and
Markdown renderings, and the figures, written as one folder."""
