// The console (filled by the console issue).
