//! The style sheet and the script inlined in every report. The script is small and written
//! here: copy buttons, and the detail view that redraws any range of the log entry by entry
//! from the data embedded in the page (zoom in, zoom out, one epoch, a clicked spot).

/// The style sheet.
pub const STYLE: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1260px;color:#1d232a;padding:0 1em}
h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}th,td{padding:.25em .6em;text-align:left;vertical-align:top}
table.facts th{color:#57606a;font-weight:600;white-space:nowrap}table.grid th{background:#f3f5f7}
table.grid td,table.grid th{border:1px solid #d0d7de}tr.bad td{background:#fff1f0}
.badge{display:inline-block;padding:0 .5em;border-radius:.7em;font-size:.9em;font-weight:600}
.badge.held{background:#dafbe1;color:#116329}.badge.violated{background:#ffebe9;color:#a40e26}
.cmd{display:flex;gap:.5em;align-items:flex-start;margin:.3em 0}.cmd pre{margin:0;flex:1;background:#f6f8fa;padding:.4em .6em;overflow-x:auto;border-radius:4px}
button{font:inherit;cursor:pointer}.finding{background:#fff8f0;border-left:4px solid #d1242f;padding:.4em .8em;margin:.4em 0}
.violation{border:1px solid #d0d7de;border-radius:6px;padding:.2em 1em 1em;margin:1em 0}
.scroll{overflow-x:auto}svg.timeline{font:11px system-ui,sans-serif;background:#fff}
svg .epoch.e0{fill:#f4f6f8}svg .epoch.e1{fill:#e9edf1}svg .rowband.r0{fill:none}svg .rowband.r1{fill:#000;fill-opacity:.025}
svg .rowname{fill:#333}svg .w{fill:#2f6fb0}svg .w.fua{fill:#c26d00;stroke:#7a4400;stroke-width:.6}
svg .w.discard{fill:#8a8f95}svg .w.dropped{fill:#fff;fill-opacity:1;stroke:#d1242f;stroke-width:1.2;stroke-dasharray:2 1.5}
svg .w.torn{fill:#e8a33b;stroke:#d1242f;stroke-width:1.2}svg .w.after{fill:#c2c7cc}svg .w.kept{fill:#2f6fb0}
svg .flush{stroke:#1a7f37;stroke-width:1.2}svg .fua-line{stroke:#c26d00;stroke-width:1;stroke-dasharray:3 2}
svg .mark{stroke:#6639ba;stroke-width:1.4}svg .marklabel{fill:#6639ba}
svg .cut{stroke:#d1242f;stroke-width:2.5}svg .cut-label{fill:#d1242f;font-weight:600}
svg .violation-at{stroke:#d1242f;stroke-width:1.5;stroke-dasharray:4 2}svg .violation-at-label{fill:#d1242f}
svg .power-cut{stroke:#000;stroke-width:2.5}svg .power-cut-label{font-weight:600}
svg .axis line{stroke:#57606a}svg .axis text{fill:#57606a;text-anchor:middle}svg .axis .axisname{text-anchor:start}
.legend span{display:inline-block;margin-right:1.2em}.legend i{display:inline-block;width:14px;height:10px;margin-right:.3em;vertical-align:middle}
.controls{margin:.5em 0;display:flex;flex-wrap:wrap;gap:.5em;align-items:center}.controls input{width:6em}
svg.chart{font:11px system-ui,sans-serif}svg.chart .series{fill:none;stroke:#2f6fb0;stroke-width:2}svg.chart .grid{stroke:#d0d7de}
svg.chart .finding-at{stroke:#d1242f;stroke-dasharray:3 2}
"#;

/// The script.
pub const SCRIPT: &str = r#"
(function(){
document.querySelectorAll('button.copy').forEach(function(b){b.addEventListener('click',function(){
 var t=b.parentNode.querySelector('code').textContent;
 if(navigator.clipboard){navigator.clipboard.writeText(t).then(function(){b.textContent='copied';});}
 else{var r=document.createRange();r.selectNodeContents(b.parentNode.querySelector('code'));var s=getSelection();s.removeAllRanges();s.addRange(r);}
});});
var dataEl=document.getElementById('log-data');if(!dataEl)return;
var D=JSON.parse(dataEl.textContent),N=D.entries.length,box=document.getElementById('detail');
var from=document.getElementById('detail-from'),to=document.getElementById('detail-to'),ep=document.getElementById('detail-epoch');
var NS='http://www.w3.org/2000/svg',MAX=2000,L=230,P=960,MB=64,R=20,AX=26;
function el(n,a,t){var e=document.createElementNS(NS,n);for(var k in a)e.setAttribute(k,a[k]);if(t){var ti=document.createElementNS(NS,'title');ti.textContent=t;e.appendChild(ti);}return e;}
function txt(n,a,s){var e=el(n,a);e.textContent=s;return e;}
function desc(i){var e=D.entries[i],k=['write','discard','FLUSH','mark'][e[0]];
 if(e[0]===3)return 'entry '+i+': mark '+(D.marks[i]||'');if(e[0]===2)return 'entry '+i+': FLUSH';
 return 'entry '+i+': '+k+' sectors '+e[4]+'-'+(e[4]+e[5]-1)+(e[3]?' FLUSH':'')+(e[2]?' FUA':'');}
function draw(a,b){a=Math.max(0,Math.min(a,N));b=Math.max(a+1,Math.min(b,N,a+MAX));
 from.value=a;to.value=b;var rows=Math.max(1,D.rows.length),H=MB+rows*R+AX,W=L+P+20,w=P/(b-a);
 var s=el('svg',{'class':'timeline',id:'detail-svg',viewBox:'0 0 '+W+' '+H,width:W,height:H,'data-from':a,'data-to':b});
 function x(i){return L+(i-a)*w;}
 D.epochs.forEach(function(p,k){if(p[1]<=a||p[0]>=b)return;var x0=x(Math.max(p[0],a)),x1=x(Math.min(p[1],b));
  s.appendChild(el('rect',{'class':'epoch e'+(k%2),x:x0,y:0,width:x1-x0,height:H-AX},'epoch '+k+': entries '+p[0]+' to '+(p[1]-1)));});
 D.rows.forEach(function(n,r){s.appendChild(txt('text',{'class':'rowname',x:4,y:MB+r*R+R*0.7},n.length>34?n.slice(0,33)+'\u2026':n));});
 var last=[-1e9,-1e9,-1e9];
 for(var i=a;i<b;i++){var e=D.entries[i],cx=x(i)+w/2,t=desc(i);
  if(e[1]>=0){s.appendChild(el('rect',{'class':'w'+(e[2]?' fua':'')+(e[0]===1?' discard':''),x:x(i)+w*0.1,y:MB+e[1]*R+3,width:Math.max(w*0.8,0.8),height:R-6},t));}
  if(e[3])s.appendChild(el('line',{'class':'flush',x1:cx,x2:cx,y1:MB-14,y2:H-AX},t));
  if(e[2])s.appendChild(el('line',{'class':'fua-line',x1:cx,x2:cx,y1:MB-14,y2:H-AX},t));
  if(e[0]===3){s.appendChild(el('line',{'class':'mark',x1:cx,x2:cx,y1:MB-12,y2:MB},t));
   for(var l=0;l<3;l++){if(cx-last[l]>=150){last[l]=cx;var lb=(D.marks[i]||'').split(' (')[0];
    s.appendChild(txt('text',{'class':'marklabel',x:cx+2,y:14+l*14},lb.length>22?lb.slice(0,21)+'\u2026':lb));break;}}}}
 var step=Math.max(1,Math.pow(10,Math.floor(Math.log10(Math.max(1,(b-a)/8)))));
 for(var j=Math.ceil(a/step)*step;j<=b;j+=step){s.appendChild(txt('text',{'class':'axis',x:x(j),y:H-AX+16,'text-anchor':'middle'},String(j)));}
 box.innerHTML='';box.appendChild(s);}
function epochOf(i){for(var k=0;k<D.epochs.length;k++){if(i<D.epochs[k][1])return k;}return D.epochs.length-1;}
function show(a,b){draw(a,b);ep.value=epochOf(a);}
document.getElementById('detail-show').addEventListener('click',function(){show(+from.value,+to.value);});
document.getElementById('detail-epoch-show').addEventListener('click',function(){var p=D.epochs[+ep.value];if(p)draw(p[0],p[1]);});
document.getElementById('zoom-in').addEventListener('click',function(){var a=+from.value,b=+to.value,q=Math.max(1,Math.floor((b-a)/4));show(a+q,b-q);});
document.getElementById('zoom-out').addEventListener('click',function(){var a=+from.value,b=+to.value,q=Math.max(1,Math.floor((b-a)/2));show(a-q,b+q);});
var ov=document.getElementById('overview');
if(ov)ov.addEventListener('click',function(ev){var r=ov.getBoundingClientRect(),sx=(ev.clientX-r.left)*(ov.viewBox.baseVal.width/r.width);
 if(sx<L)return;var f=+ov.getAttribute('data-from'),t=+ov.getAttribute('data-to'),i=Math.floor(f+(sx-L)/P*(t-f));show(i-100,i+100);
 box.scrollIntoView({behavior:'smooth',block:'nearest'});});
show(0,Math.min(N,200));
})();
"#;
