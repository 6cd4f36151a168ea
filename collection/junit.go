package collection

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/grpctap/grpctap/replay"
)

// JUnit XML as Jenkins (the xunit/junit plugins' junit-10.xsd) and GitLab
// read it: <testsuites> with one <testsuite> per collection, one
// <testcase> per request; a mismatch is a <failure>, a request that could
// not be run an <error>. Times are seconds with three decimals, as the
// schema's pattern wants.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Hostname  string      `xml:"hostname,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func seconds(ms float64) string { return fmt.Sprintf("%.3f", ms/1000) }

// WriteJUnit writes the results of a run of collection name, started at
// start, as JUnit XML.
func WriteJUnit(w io.Writer, name string, start time.Time, results []Result) error {
	host, _ := os.Hostname()
	suite := junitSuite{Name: name, Timestamp: start.UTC().Format("2006-01-02T15:04:05"), Hostname: host, Cases: []junitCase{}}
	if suite.Hostname == "" {
		suite.Hostname = "localhost"
	}
	var totalMS float64
	for _, r := range results {
		svc := strings.TrimPrefix(r.Method, "/")
		if i := strings.IndexByte(svc, '/'); i >= 0 {
			svc = svc[:i]
		}
		tc := junitCase{Name: r.Request, Classname: name + "." + svc, Time: seconds(r.DurationMS)}
		totalMS += r.DurationMS
		var details bytes.Buffer
		replay.WriteDetails(&details, r.Result)
		switch r.Verdict {
		case replay.Error:
			suite.Errors++
			tc.Error = &junitProblem{Message: r.Error, Type: "error", Text: r.Error}
		case replay.Mismatch:
			suite.Failures++
			what := "differences"
			if len(r.Diffs) == 1 {
				what = "difference"
			}
			tc.Failure = &junitProblem{Message: fmt.Sprintf("%d %s from the expected answer", len(r.Diffs), what), Type: "mismatch", Text: details.String()}
		default:
			tc.SystemOut = details.String()
		}
		suite.Tests++
		suite.Cases = append(suite.Cases, tc)
	}
	suite.Time = seconds(totalMS)
	doc := junitSuites{Name: "grpctap test " + name, Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors,
		Time: suite.Time, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
