package checks

// NewCheckRedactorForTest lets the benchmark build a check's redactor as
// Check does.
var NewCheckRedactorForTest = newCheckRedactor
