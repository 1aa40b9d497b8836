-- Read one job. ARGV: id. Reply: {record, data, result, error} (nils when absent).
return snapshot(ARGV[1])
