// (being built)
import {fill, h} from "../dom.js";
export async function render(main) { fill(main, h("p", {class: "empty"}, "This page is not built yet.")); }
