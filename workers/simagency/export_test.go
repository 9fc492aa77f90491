package simagency

// TimesApplied returns how many times a applied the work item id, as its
// record shows: 0 or 1.
func (a *Agency) TimesApplied(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.applied[id]; ok {
		return 1
	}
	return 0
}
