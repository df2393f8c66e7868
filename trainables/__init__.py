"""lorasweep's trainables: the trial configuration, the one training loop, tasks and adapters."""

import logging as _logging

# bitsandbytes (imported by peft and transformers whenever it is installed) logs a warning at
# import on CPUs with AVX512-BF16 when the optional ``kernels`` package, which downloads an
# optimised CPU 4-bit kernel from the Hugging Face Hub, is missing. bitsandbytes then uses its
# own CPU kernel, which is what the offline machines here run. With ``kernels`` installed (a
# dependency of transformers since 5.25) and the hub offline, ``kernels`` warns that it skips
# the kernel publisher's trust check before that load fails the same way. Either line would
# otherwise be a second line under every one-line error and in every trial's log.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
_logging.getLogger("kernels").setLevel(_logging.ERROR)
