package api

import (
	"net/http"
	"strconv"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
)

// StartRolloutRequest is the body of POST .../rollouts: the plan is YAML
// text, validated strictly.
type StartRolloutRequest struct {
	Slot string `json:"slot"`
	Plan string `json:"plan"`
}

// RolloutCommand is the body of the pause/resume/promote/abort endpoints.
type RolloutCommand struct {
	Reason string `json:"reason,omitempty"`
}

// MountRollouts adds the rollout endpoints for m.
func (s *Server) MountRollouts(mux *http.ServeMux, m *rollout.Manager) {
	s.rollouts = m
	mux.HandleFunc("POST /api/v1/apps/{app}/rollouts", func(w http.ResponseWriter, r *http.Request) {
		var req StartRolloutRequest
		if err := DecodeJSON(r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		if req.Slot == "" {
			s.fail(w, r, modelslot.Errorf(modelslot.EINVALID, "rollout: name the candidate slot (e.g. staging)"))
			return
		}
		plan, err := rollout.ParsePlan([]byte(req.Plan))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ro, err := m.Start(r.Context(), r.PathValue("app"), req.Slot, plan, Actor(r))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, ro)
	})
	mux.HandleFunc("GET /api/v1/apps/{app}/rollouts", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit <= 0 {
			limit = 50
		}
		if _, err := s.Engine.App(r.Context(), r.PathValue("app")); err != nil {
			s.fail(w, r, err)
			return
		}
		hist, err := m.History(r.Context(), r.PathValue("app"), limit)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if hist == nil {
			hist = []*rollout.Rollout{}
		}
		WriteJSON(w, map[string]any{"rollouts": hist})
	})
	mux.HandleFunc("GET /api/v1/apps/{app}/rollouts/active", func(w http.ResponseWriter, r *http.Request) {
		ro, err := m.Active(r.Context(), r.PathValue("app"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if ro == nil {
			s.fail(w, r, modelslot.Errorf(modelslot.ENOTFOUND, "app %s has no active rollout: start one with `modelslot rollout start <slot> --plan plan.yaml`", r.PathValue("app")))
			return
		}
		WriteJSON(w, ro)
	})
	mux.HandleFunc("GET /api/v1/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		ro, err := m.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, ro)
	})
	for _, op := range []string{"pause", "resume", "promote", "abort"} {
		mux.HandleFunc("POST /api/v1/apps/{app}/rollout/"+op, func(w http.ResponseWriter, r *http.Request) {
			var req RolloutCommand
			if r.ContentLength != 0 {
				if err := DecodeJSON(r, &req); err != nil {
					s.fail(w, r, err)
					return
				}
			}
			app, actor := r.PathValue("app"), Actor(r)
			var ro *rollout.Rollout
			var err error
			switch op {
			case "pause":
				ro, err = m.Pause(r.Context(), app, actor)
			case "resume":
				ro, err = m.Resume(r.Context(), app, actor)
			case "promote":
				ro, err = m.Promote(r.Context(), app, actor)
			case "abort":
				ro, err = m.Abort(r.Context(), app, actor, req.Reason)
			}
			if err != nil {
				s.fail(w, r, err)
				return
			}
			WriteJSON(w, ro)
		})
	}
}
