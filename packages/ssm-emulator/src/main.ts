console.log("rdsd-emulator: not yet");
