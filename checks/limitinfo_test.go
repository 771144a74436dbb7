package checks

import "testing"

func TestParseLimitInfo(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want APIRequests
		ok   bool
	}{
		{"api-usage=10018/100000", APIRequests{Max: 100000, Remaining: 89982}, true},
		{"api-usage=10018/100000; per-app-api-usage=17/250(appName=sample)", APIRequests{Max: 100000, Remaining: 89982}, true},
		{"per-app-api-usage=17/250(appName=sample); API-Usage = 5 / 10", APIRequests{Max: 10, Remaining: 5}, true},
		{"api-usage=120/100", APIRequests{Max: 100, Remaining: 0}, true},
		{"api-usage=0/0", APIRequests{}, true},
		{"", APIRequests{}, false},
		{"api-usage=", APIRequests{}, false},
		{"api-usage=1/x", APIRequests{}, false},
		{"api-usage=-1/10", APIRequests{}, false},
		{"api-usage=1/99999999999999999999", APIRequests{}, false},
		{"per-app-api-usage=17/250", APIRequests{}, false},
	} {
		got, ok := parseLimitInfo(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseLimitInfo(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
