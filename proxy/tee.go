package proxy

// Tee returns an Observer that passes every event to each of observers, in
// order; nil observers are skipped. The observers share the event values
// and must treat them as read-only.
func Tee(observers ...Observer) Observer {
	var t tee
	for _, o := range observers {
		if o != nil {
			t = append(t, o)
		}
	}
	switch len(t) {
	case 0:
		return nil
	case 1:
		return t[0]
	}
	return t
}

type tee []Observer

func (t tee) StartCall(s *CallStart) CallObserver {
	// Most calls have one interested observer (the schema learner only
	// looks at the start): it is returned as it is, with no teeCall made.
	var one CallObserver
	var cs teeCall
	for _, o := range t {
		c := o.StartCall(s)
		switch {
		case c == nil:
		case one == nil:
			one = c
		default:
			if cs == nil {
				cs = teeCall{one}
			}
			cs = append(cs, c)
		}
	}
	if cs != nil {
		return cs
	}
	return one
}

type teeCall []CallObserver

func (t teeCall) ResponseHeader(h *Header) {
	for _, c := range t {
		c.ResponseHeader(h)
	}
}

func (t teeCall) Message(m *Message) {
	for _, c := range t {
		c.Message(m)
	}
}

func (t teeCall) EndCall(e *CallEnd) {
	for _, c := range t {
		c.EndCall(e)
	}
}
