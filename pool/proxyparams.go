package pool

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// proxyCommand answers SET and SHOW of cmpool's own parameters. It reports whether the
// query was one.
func (c *clientSession) proxyCommand(q string) (bool, error) {
	if !c.Judge(q).G.Has(router.MentionsCmpool) {
		return false, nil
	}
	v := c.srv.classifier.Classify(q)
	if v.Statements != 1 || v.ProxySet == nil && v.ProxyShow == "" {
		return false, nil
	}
	// Earlier requests first: their replies may change what SHOW reports.
	c.WaitIdle()
	var reply []byte
	if v.ProxyShow != "" {
		val, perr := c.routing.show(v.ProxyShow)
		if perr != nil {
			reply = protocol.AppendErrorResponse(nil, perr)
		} else {
			reply = appendOneValue(nil, v.ProxyShow, val)
		}
	} else if perr := c.routing.set(v.ProxySet); perr != nil {
		reply = protocol.AppendErrorResponse(nil, perr)
	} else {
		reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SET")}).Encode(nil)
	}
	return true, c.ReplyLocally(reply)
}

// show answers SHOW of one of cmpool's own parameters.
func (r *routing) show(name string) (string, *protocol.Error) {
	if name == router.ParamLastWriteLSN {
		lsn, err := r.lastWritePosition(r.srv.ctx)
		if err != nil {
			return "", protocol.NewError(protocol.CodeConnectionFailure, fmt.Sprintf("could not read the primary's WAL position: %v", err))
		}
		return lsn.String(), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch name {
	case router.ParamRoute:
		return r.route, nil
	case router.ParamMinLSN:
		return r.minLSN.String(), nil
	}
	return "", unrecognizedParam(name)
}

// set applies SET [LOCAL] of one of cmpool's own parameters.
func (r *routing) set(s *router.Setting) *protocol.Error {
	switch s.Name {
	case router.ParamRoute:
		route, err := router.ParseRoute(strings.TrimSpace(s.Value))
		if err != nil {
			return protocol.NewError("22023", err.Error())
		}
		r.mu.Lock()
		if s.Local {
			r.routeOnce = route
		} else {
			r.route = route
		}
		r.mu.Unlock()
		return nil
	case router.ParamMinLSN:
		lsn, err := router.ParseMinLSN(s.Value)
		if err != nil {
			return protocol.NewError("22023", err.Error())
		}
		r.mu.Lock()
		r.minLSN = lsn
		r.mu.Unlock()
		return nil
	}
	return unrecognizedParam(s.Name)
}

// unrecognizedParam is PostgreSQL's error for a parameter it does not know.
func unrecognizedParam(name string) *protocol.Error {
	return protocol.NewError("42704", fmt.Sprintf("unrecognized configuration parameter %q", name))
}

// appendOneValue appends a one-column, one-row text result and its CommandComplete.
func appendOneValue(dst []byte, column, value string) []byte {
	dst, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
		Name: []byte(column), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1,
	}}}).Encode(dst)
	dst, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte(value)}}).Encode(dst)
	dst, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SHOW")}).Encode(dst)
	return dst
}
