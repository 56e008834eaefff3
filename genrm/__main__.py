from genrm.cli import main

# Guarded: engines that spawn worker processes (vLLM on CPU) import the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
