"""``python -m rtserve.observability.decisions``: the decision log's writer process
(``writer.WriterProcess`` starts it; it reads batches on stdin and is of no use by hand)."""

from rtserve.observability.decisions.writer import main

if __name__ == "__main__":
    main()
