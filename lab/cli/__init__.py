"""The `lab` command: `fast` answers a plain `lab search` or `lab status` without click; `app` is the click CLI
(commands imported lazily from the modules beside it). The only code that prints or exits."""
