"""The process as every entry point runs it: its set-up, the command-line conventions, threads and device, and the
private parts of Paddle this project relies on. It imports only `utils` (and paddle at call time), so every layer
above may import it."""
