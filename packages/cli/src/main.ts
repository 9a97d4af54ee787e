console.log("rdsd: not yet");
