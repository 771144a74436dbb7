package checks

// NewCheckRedactorForTest lets the benchmark build a check's redactor as
// Check does.
var NewCheckRedactorForTest = newCheckRedactor

// ReleaseRedactorForTest ends a check's redactor as Check does.
func ReleaseRedactorForTest(r *Redactor) { r.release() }
