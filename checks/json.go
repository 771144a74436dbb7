package checks

import (
	"encoding/json"
	"time"
)

// JSON carries durations as float seconds (base units, as in the metrics).
// Each method shadows the duration fields of an alias of its type: the
// shallower field wins in encoding/json, so the alias keeps everything else.

func seconds(d time.Duration) float64 { return d.Seconds() }

func fromSeconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// MarshalJSON implements json.Marshaler.
func (p Phases) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Resolve    float64 `json:"resolve_seconds"`
		Connect    float64 `json:"connect_seconds"`
		TLS        float64 `json:"tls_seconds"`
		Processing float64 `json:"processing_seconds"`
		Transfer   float64 `json:"transfer_seconds"`
	}{seconds(p.Resolve), seconds(p.Connect), seconds(p.TLS), seconds(p.Processing), seconds(p.Transfer)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *Phases) UnmarshalJSON(b []byte) error {
	var v struct {
		Resolve    float64 `json:"resolve_seconds"`
		Connect    float64 `json:"connect_seconds"`
		TLS        float64 `json:"tls_seconds"`
		Processing float64 `json:"processing_seconds"`
		Transfer   float64 `json:"transfer_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Phases{fromSeconds(v.Resolve), fromSeconds(v.Connect), fromSeconds(v.TLS), fromSeconds(v.Processing), fromSeconds(v.Transfer)}
	return nil
}

type plainStep StepResult

// MarshalJSON implements json.Marshaler.
func (s StepResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		plainStep
		Duration float64 `json:"duration_seconds"`
	}{plainStep(s), seconds(s.Duration)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (s *StepResult) UnmarshalJSON(b []byte) error {
	v := struct {
		*plainStep
		Duration float64 `json:"duration_seconds"`
	}{plainStep: (*plainStep)(s)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.Duration = fromSeconds(v.Duration)
	return nil
}

type plainFacts TokenFacts

// MarshalJSON implements json.Marshaler.
func (f TokenFacts) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		plainFacts
		ClockSkew float64 `json:"clock_skew_seconds,omitzero"`
		Lifetime  float64 `json:"lifetime_seconds,omitzero"`
	}{plainFacts(f), seconds(f.ClockSkew), seconds(f.Lifetime())})
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *TokenFacts) UnmarshalJSON(b []byte) error {
	v := struct {
		*plainFacts
		ClockSkew float64 `json:"clock_skew_seconds,omitzero"`
	}{plainFacts: (*plainFacts)(f)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	f.ClockSkew = fromSeconds(v.ClockSkew)
	return nil
}

type plainResult Result

// MarshalJSON implements json.Marshaler.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		plainResult
		Duration float64 `json:"duration_seconds"`
	}{plainResult(r), seconds(r.Duration)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (r *Result) UnmarshalJSON(b []byte) error {
	v := struct {
		*plainResult
		Duration float64 `json:"duration_seconds"`
	}{plainResult: (*plainResult)(r)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.Duration = fromSeconds(v.Duration)
	return nil
}
